"""CoreML backend: coremltools `MLModel` on macOS, the bundled numpy emulator of the mlpackage elsewhere."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .base import Model, check_inputs


def open_coreml(path: Path, num_threads: int = 2, signature: str | None = None) -> Model:  # noqa: ARG001
    """Open an .mlpackage; `signature` names a function of a multifunction package (None = its default)."""
    return _open_coreml(Path(path), signature)


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
