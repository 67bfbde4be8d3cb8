"""Export targets as plug-ins: one folder per target behind one registry (`registry.BACKENDS`).

    from converters.backends import get_backend
    backend = get_backend("onnx")          # unknown names fail listing the known ones
    models = backend.export(model, spec, out_dir, plan, work, progress)

See `base.py` for the `Backend` / `Capabilities` interface and docs/interfaces.md for how to add one.
"""

from converters.backends.base import AppliedTables, Backend, Capabilities, W8A8Support
from converters.backends.registry import ALIASES, BACKENDS, TARGETS, backends, canonical_target, get_backend

__all__ = ["ALIASES", "BACKENDS", "TARGETS", "AppliedTables", "Backend", "Capabilities", "W8A8Support", "backends",
           "canonical_target", "get_backend"]
