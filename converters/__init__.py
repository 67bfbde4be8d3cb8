"""Model -> verified deployment packages, one per target (`convert`), and their re-check (`verify_package`).

    from converters import ConvertOptions, convert
    results = convert("tinysam", ConvertOptions(targets="onnx,tflite", precision="int8", out_dir="packages"))

Targets are plug-ins behind `converters.backends` (`get_backend(name)`, `TARGETS`).
"""

from converters.api import PackageResult, ParityError, build_package, convert, load_model
from converters.backends import TARGETS, get_backend
from converters.options import ConvertOptions
from converters.verify import verify_package

__all__ = ["TARGETS", "ConvertOptions", "PackageResult", "ParityError", "build_package", "convert", "get_backend",
           "load_model", "verify_package"]
