"""Runtime kind -> opener. Registering a runtime is one line in `RUNTIMES`.

A kind is the target name a package declares (`manifest.target`). Each entry names the module and the
function that opens one model file of that kind: `opener(path, num_threads, signature) -> Model`. The
module is imported only when a model of that kind is opened, so a runtime whose library is missing
(or that needs torch) costs nothing until it is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

RUNTIMES: dict[str, tuple[str, str]] = {
    "onnx": ("mobile_runtime.backends.onnx_backend", "open_onnx"),
    "tflite": ("mobile_runtime.backends.litert_backend", "open_litert"),
    "coreml": ("mobile_runtime.backends.coreml_backend", "open_coreml"),
    "executorch": ("mobile_runtime.backends.executorch_backend", "open_executorch"),
    "coreai": ("mobile_runtime.backends.coreai_backend", "open_coreai"),
}
ALIASES: dict[str, str] = {"litert": "tflite"}  # other spellings of a kind

KINDS: tuple[str, ...] = tuple(RUNTIMES)


def canonical_kind(kind: str) -> str:
    """The registered kind for `kind` (aliases resolved); unknown kinds raise a ValueError listing the known ones."""
    key = ALIASES.get(kind, kind) if isinstance(kind, str) else kind
    if key not in RUNTIMES:
        raise ValueError(f"unknown backend kind {kind!r}; choose one of {', '.join(KINDS)}")
    return key


def opener(kind: str) -> Callable:
    """The function that opens models of `kind`."""
    module, function = RUNTIMES[canonical_kind(kind)]
    return getattr(importlib.import_module(module), function)
