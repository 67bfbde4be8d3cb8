"""Silence the converters' harmless log noise so users see only what matters."""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
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


# Lines the native libraries (TensorFlow, LiteRT, absl) write straight to file descriptor 2; the
# Python-level filters above never see them.
NATIVE_NOISE = (
    r"WARNING: All log messages before absl::InitializeLog\(\) is called",
    r"I\d{4} ",  # absl INFO lines, e.g. TensorFlow's oneDNN notice
    r"INFO: (Created TensorFlow Lite|Initialized TensorFlow Lite)",
)
_native_filter: list = []


def filter_native_stderr() -> None:
    """Drop `NATIVE_NOISE` lines from this process's stderr (fd 2); everything else passes through.

    For the command-line program only (it rewires fd 2 through a pipe and a forwarding thread until
    exit); errors, warnings and progress still reach the terminal, line by line.
    """
    if _native_filter:
        return
    noise = re.compile("|".join(f"(?:{p})" for p in NATIVE_NOISE))
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward() -> None:
        pending = b""
        while chunk := os.read(read_end, 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            out = b"".join(line + b"\n" for line in lines if not noise.match(line.decode(errors="replace")))
            if out:
                os.write(real, out)
        if pending and not noise.match(pending.decode(errors="replace")):
            os.write(real, pending)
        os.close(read_end)

    thread = threading.Thread(target=forward, name="stderr-filter", daemon=True)
    thread.start()

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(real, 2)  # the pipe's last write end closes: the thread drains it and stops
        thread.join(timeout=5)

    atexit.register(restore)
    _native_filter.append(thread)
