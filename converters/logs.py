"""Silence the converters' harmless log noise so users see only what matters."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings

# Messages known to be harmless with the pinned toolchain (see README "Toolchain").
HARMLESS = (
    r".*Failed to load .*_C_mxfp8.*",
    r".*_C_cutlass_90a.*",
    r".*oneDNN custom operations are on.*",
    r".*KernelPreference.*",
    r".*torchvision is not installed.*",
    r".*LeafSpec.*",
    r".*Axis 1 is out-of-range for weight.*",
    r".*Failed to load _MLModelAssetProxy.*",
    r".*has not been tested with coremltools.*",
    r".*TracerWarning.*",
    r".*coreai-torch has only been validated with torch.*",  # the "+cpu" label of torch 2.13.0 trips it
    r".*has not been tested with coreai.*",
)


class _DropHarmless(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        import re

        msg = record.getMessage()
        return not any(re.match(p, msg, re.S) for p in HARMLESS)


def quiet_logs() -> None:
    """Install env settings, warning filters and logging filters (call before importing the tools)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "2")
    for pattern in HARMLESS:
        warnings.filterwarnings("ignore", message=pattern)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    flt = _DropHarmless()
    for name in ("", "coremltools", "torchao", "onnxruntime", "absl", "torch.onnx", "root"):
        logger = logging.getLogger(name)
        logger.addFilter(flt)
    for name in ("coremltools", "torchao", "absl", "jax", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)



@contextlib.contextmanager
def quiet():
    """Silence the converters' progress chatter and harmless warnings inside the block (errors still raise)."""
    buf = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        warnings.simplefilter("ignore")
        yield
