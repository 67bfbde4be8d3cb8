"""ExecuTorch (.pte) target: programs lowered with the XNNPACK partitioner (`export_executorch`)."""
