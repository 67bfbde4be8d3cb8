"""Model backends behind one small interface: `open_model(path, kind, ...) -> Model`.

A `Model` has `.input_names`, `.output_names` and `.run(inputs: dict[str, np.ndarray]) -> dict`.
Inputs are cast to the dtype each backend tensor expects (quantized LiteRT tensors are quantized
with their scale / zero point, quantized outputs dequantized), so callers always pass and get
float32 / integer numpy arrays.

Kinds (`registry.RUNTIMES`, one line each): "onnx" (onnxruntime), "tflite" (ai_edge_litert; alias
"litert"), "coreml" (coremltools `MLModel` on macOS, the bundled numpy emulator of the mlpackage
elsewhere), "executorch" (`executorch.runtime`, XNNPACK delegate; imported only when a .pte model is
opened, since it links torch), "coreai" (Apple's Core AI runtime from coreai-core, imported only when a
`.aimodel` is opened). An unknown kind is refused with the list of known ones.

`signature` names one entry point of a multi-entry file: a LiteRT signature (`k16`), a function
of a multifunction CoreML package (`decoder_k16`) or a method of an ExecuTorch program (`decoder_k16`);
an unknown name fails with the available names.
"""

from __future__ import annotations

from pathlib import Path

from .base import Model, check_inputs, input_shape
from .registry import ALIASES, KINDS, RUNTIMES, canonical_kind, opener


def open_model(path: str | Path, kind: str, num_threads: int = 2, signature: str | None = None) -> Model:
    """Open one model file (or .mlpackage directory) with the runtime for `kind`.

    `signature` selects a LiteRT signature (e.g. "k16") or the function of a multifunction CoreML
    package (e.g. "decoder_k16"; None = the package's default function); ONNX ignores it.
    """
    open_kind = opener(kind)
    path = Path(path)
    if not path.exists():
        raise ValueError(f"model file {path} does not exist")
    if num_threads < 1:
        raise ValueError(f"num_threads must be at least 1, got {num_threads}")
    return open_kind(path, num_threads=num_threads, signature=signature)


__all__ = ["ALIASES", "KINDS", "RUNTIMES", "Model", "canonical_kind", "check_inputs", "input_shape", "open_model"]
