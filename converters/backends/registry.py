"""Target name -> export backend. Registering a target is one line in `BACKENDS`.

Each entry names the package whose `BACKEND` (a `converters.backends.base.Backend`) implements the
target; it is imported when first asked for. Order is the order of `--target all`.
"""

from __future__ import annotations

import importlib

from converters.backends.base import Backend

BACKENDS: dict[str, str] = {
    "onnx": "converters.backends.onnx",
    "tflite": "converters.backends.litert",
    "coreml": "converters.backends.coreml",
    "executorch": "converters.backends.executorch",
    "coreai": "converters.backends.coreai",
}
# Other names accepted for a target (the package and CLI spelling stays the key of BACKENDS).
ALIASES: dict[str, str] = {"litert": "tflite"}

TARGETS: tuple[str, ...] = tuple(BACKENDS)


def canonical_target(name: str) -> str:
    """The registered target name for `name` (aliases resolved); an unknown name raises a one-line
    ValueError listing the known targets."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in BACKENDS:
        raise ValueError(f"unknown target {name!r}; choose one of: {', '.join(TARGETS)}")
    return key


def get_backend(name: str) -> Backend:
    """The export backend of target `name` (or an alias); unknown names are refused with the known list."""
    key = canonical_target(name)
    backend = importlib.import_module(BACKENDS[key]).BACKEND
    if not isinstance(backend, Backend) or backend.name != key:
        raise RuntimeError(f"{BACKENDS[key]}.BACKEND must be a Backend named {key!r}")
    return backend


def backends() -> list[Backend]:
    """Every registered backend, in `TARGETS` order."""
    return [get_backend(name) for name in TARGETS]
