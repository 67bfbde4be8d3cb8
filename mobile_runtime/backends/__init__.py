"""Model backends behind one small interface: `open_model(path, kind, ...) -> Model`.

A `Model` has `.input_names`, `.output_names` and `.run(inputs: dict[str, np.ndarray]) -> dict`.
Inputs are cast to the dtype each backend tensor expects (quantized LiteRT tensors are quantized
with their scale / zero point, quantized outputs dequantized), so callers always pass and get
float32 / integer numpy arrays.

Kinds: "onnx" (onnxruntime), "tflite" (ai_edge_litert), "coreml" (coremltools `MLModel` on macOS,
the bundled numpy emulator of the mlpackage elsewhere), "coreai" (Apple's Core AI runtime from coreai-core,
imported only when a `.aimodel` is opened).

`signature` names one entry point of a multi-entry file: a LiteRT signature (`k16`) or a function
of a multifunction CoreML package (`decoder_k16`); an unknown name fails with the available names.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Protocol

import numpy as np

KINDS = ("onnx", "tflite", "coreml", "coreai")


class Model(Protocol):
    """What every backend returns."""

    input_names: list[str]
    output_names: list[str]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; keys are backend tensor names."""
        ...


def input_shape(model: Model, name: str) -> tuple[int | None, ...] | None:
    """Declared shape of input `name` (None for a dynamic axis), or None when the backend does not say."""
    return getattr(model, "input_shapes", {}).get(name)


def check_inputs(model: Model, inputs: dict[str, np.ndarray]) -> None:
    """Refuse missing or unknown input names with one clear message."""
    missing = [n for n in model.input_names if n not in inputs]
    extra = [n for n in inputs if n not in model.input_names]
    if missing or extra:
        raise ValueError(f"model inputs are {model.input_names}; missing {missing}, unexpected {extra}")


def open_model(path: str | Path, kind: str, num_threads: int = 2, signature: str | None = None) -> Model:
    """Open one model file (or .mlpackage directory) with the runtime for `kind`.

    `signature` selects a LiteRT signature (e.g. "k16") or the function of a multifunction CoreML
    package (e.g. "decoder_k16"; None = the package's default function); ONNX ignores it.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"model file {path} does not exist")
    if num_threads < 1:
        raise ValueError(f"num_threads must be at least 1, got {num_threads}")
    if kind == "onnx":
        from .onnx_backend import OnnxModel

        return OnnxModel(path, num_threads=num_threads)
    if kind == "tflite":
        from .litert_backend import LiteRTModel

        return LiteRTModel(path, num_threads=num_threads, signature=signature)
    if kind == "coreml":
        return _open_coreml(path, signature)
    if kind == "coreai":
        from .coreai_backend import open_coreai

        return open_coreai(path, num_threads, signature)
    raise ValueError(f"unknown backend kind {kind!r}; choose one of {', '.join(KINDS)}")


class CoreMLModel:
    """Adapter giving a coremltools `MLModel` (or the emulator's model) the `Model` interface."""

    def __init__(self, model, input_names: list[str], output_names: list[str]) -> None:
        self._model = model
        self.input_names = list(input_names)
        self.output_names = list(output_names)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Predict once; outputs as numpy arrays."""
        check_inputs(self, inputs)
        out = self._model.predict({k: np.asarray(v) for k, v in inputs.items()})
        return {k: np.asarray(v) for k, v in out.items()}


def _feature_names(desc) -> tuple[list[str], list[str]]:
    return [i.name for i in desc.input], [o.name for o in desc.output]


def _spec_names(model, function_name: str | None) -> tuple[list[str], list[str]]:
    """Input/output names of `model` (the emulator's model, or an `MLModel` of the named function)."""
    if hasattr(model, "input_names") and hasattr(model, "output_names"):
        return list(model.input_names), list(model.output_names)
    spec = model.get_spec() if hasattr(model, "get_spec") else getattr(model, "spec", None)
    if spec is None:
        raise ValueError("cannot read input/output names of the CoreML model")
    desc = spec.description
    if len(desc.functions):  # multifunction: each function has its own features
        name = function_name or desc.defaultFunctionName
        return _feature_names(next(f for f in desc.functions if f.name == name))
    return _feature_names(desc)


def _check_function(path: Path, function_name: str | None) -> None:
    """Refuse a function name the package does not have, naming the ones it has."""
    from .coreml_emulator import function_names  # protobuf only; no CoreML runtime needed

    names = function_names(path)
    if function_name is not None and function_name not in names:
        raise ValueError(f"CoreML package {path.name} has no function {function_name!r}; "
                         f"available functions: {', '.join(sorted(names))}")


def _open_coreml(path: Path, function_name: str | None = None) -> Model:
    _check_function(path, function_name)
    if sys.platform == "darwin":
        import coremltools as ct  # only on macOS, where the real CoreML runtime exists

        if function_name is None:
            model = ct.models.MLModel(str(path))
        else:
            model = ct.models.MLModel(str(path), function_name=function_name)
    else:
        from .coreml_emulator import load_mlpackage

        model = load_mlpackage(path, function_name=function_name)
    ins, outs = _spec_names(model, function_name)
    return CoreMLModel(model, ins, outs)
