"""The command-line program drops the native libraries' log noise from stderr and keeps the rest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import os, sys
sys.path.insert(0, {root!r})
from cli_commands.stderr_filter import filter_native_stderr
filter_native_stderr()
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
os.write(2, b"I0000 00:00:1795339618.555542    3086 port.cc:153] oneDNN custom operations are on.\n")
os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
os.write(2, b"  progress line\n")
print("Error: a real one-line error", file=sys.stderr)
os.write(2, b"no newline at the end")
sys.exit(3)
"""


def test_native_noise_dropped_real_lines_kept_in_order():
    r = subprocess.run([sys.executable, "-c", SCRIPT.format(root=str(ROOT))], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 3
    assert r.stderr == "  progress line\nError: a real one-line error\nno newline at the end"
