"""Numpy emulator of CoreML ML programs (``.mlpackage``), for parity tests where CoreML cannot run.

``load_mlpackage(path, function_name=None).predict({...})`` mirrors
``coremltools.models.MLModel(path, function_name=...).predict`` (multifunction packages included). Only numpy
and the protobuf modules shipped with coremltools are used (``coremltools`` itself is not imported).
"""

from .errors import CoreMLEmulatorError, UnsupportedOpError
from .interpreter import EmulatedModel, load_mlpackage
from .program import function_names
from .registry import OPS

SUPPORTED_OPS: frozenset[str] = frozenset(OPS) | {"const", "cond", "while_loop"}

__all__ = ["SUPPORTED_OPS", "CoreMLEmulatorError", "EmulatedModel", "UnsupportedOpError", "function_names",
           "load_mlpackage"]
