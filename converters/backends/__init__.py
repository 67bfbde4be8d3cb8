"""One folder per deployment target: its export, quantization recipes and capabilities."""
