"""Core AI-only precisions are refused elsewhere with a clear one-line error, the Q-TinySAM w8a8 is refused
for Core AI, and `all` converts only the targets that export a precision (no Core AI needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from converters.api import convert
from converters.backends import get_backend
from converters.options import ConvertOptions
from converters.precision import PrecisionPlan, applied_precision
from converters.spec import PARITY_THRESHOLDS, TARGETS, ExportSpec
from tinysam.config import get_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("precision", ["palette4", "palette6", "w8a8-opt"])
def test_core_ai_only_precisions(precision):
    cfg = get_config("tinysam", 128)
    assert ExportSpec(cfg, "coreai", precision).package_name == f"tinysam-coreai-{precision}"
    assert precision in PARITY_THRESHOLDS
    for target in ("onnx", "tflite", "coreml"):
        refused = f"--precision {precision} is not supported for {target}; .*exported by: coreai$"
        with pytest.raises(ValueError, match=refused):
            ExportSpec(cfg, target, precision)
        with pytest.raises(ValueError, match=refused):
            ConvertOptions(targets=target, precision=precision).check()
    assert ConvertOptions(targets="all", precision=precision).target_list() == ["coreai"]
    plan = PrecisionPlan.for_precision(precision)
    assert applied_precision(plan, "coreai")["weights"] == plan.data["weights"]


def test_qtinysam_w8a8_is_not_a_core_ai_precision():
    with pytest.raises(ValueError, match="--precision w8a8 is not supported for coreai"):
        convert("tinysam", ConvertOptions(targets="coreai", precision="w8a8", out_dir=Path("unused")))
    assert "coreai" in TARGETS
    assert ConvertOptions(targets="all", precision="w8a8").target_list() == ["onnx", "tflite", "coreml"]
    assert ConvertOptions(targets="all", precision="fp32").target_list()[-1] == "coreai"
    assert all(p in get_backend("coreai").capabilities.precisions for p in ("fp32", "fp16", "int8", "mixed"))


def test_cli_refuses_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, "cli.py", "convert", "--target", "onnx", "--precision", "palette4",
                          "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "--precision palette4 is not supported for onnx" in out.stderr and not any(tmp_path.iterdir())
