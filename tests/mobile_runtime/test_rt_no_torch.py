"""The runtime loads and runs a package in a fresh interpreter without importing torch, tinysam or executorch
(whose runtime links torch: it is imported only when a .pte package is opened)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.runtime_probe import RUNTIME_PROBE

ROOT = Path(__file__).resolve().parents[2]

def test_runtime_never_imports_torch(onnx_package) -> None:
    out = subprocess.run([sys.executable, "-c", RUNTIME_PROBE, str(onnx_package)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["modules"] == []
    assert result["shape"] == [3, 80, 120] and result["records"] > 0
