"""The command-line program's stderr without the native libraries' log noise."""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

# Lines the native libraries (TensorFlow, LiteRT, absl, ExecuTorch) write straight to file descriptor 2, where
# Python's warning and logging filters (converters.logs) never see them.
NATIVE_NOISE = (
    r"WARNING: All log messages before absl::InitializeLog\(\) is called",
    r"I\d{4} ",  # absl INFO lines, e.g. TensorFlow's oneDNN notice
    r"INFO: (Created TensorFlow Lite|Initialized TensorFlow Lite)",
    r"\[(cpuinfo_utils|threadpool)\.cpp:\d+\] ",  # ExecuTorch runtime info: CPU probing, thread-pool size
    # torch/torchao import notices when the ExecuTorch runtime loads (harmless with the pinned set; converters.logs)
    r"Failed to load .*torchao/_C_(mxfp8|cutlass_90a)",
    r"W\d{4} .*_pytree\.py:\d+\] <enum 'KernelPreference'>",
    r"ODIE \[default\]: Loading function ",  # Core AI runtime, once per loaded function
    r"C\+\+ exception handling detected but the Swift runtime was compiled with exceptions disabled",  # Core AI
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
