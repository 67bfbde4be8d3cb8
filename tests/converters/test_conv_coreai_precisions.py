"""Core AI-only precisions are refused elsewhere with a clear one-line error (no Core AI needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from converters.api import convert
from converters.precision import applied_precision, precision_plan
from converters.spec import PARITY_THRESHOLDS, TARGET_PRECISIONS, TARGETS, ExportSpec, parse_targets, targets_for
from tinysam.config import get_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("precision", ["palette4", "palette6", "w8a8-opt"])
def test_core_ai_only_precisions(precision):
    cfg = get_config("tinysam", 128)
    assert ExportSpec(cfg, "coreai", precision).package_name == f"tinysam-coreai-{precision}"
    assert precision in PARITY_THRESHOLDS
    for target in ("onnx", "tflite", "coreml"):
        with pytest.raises(ValueError, match=f"target {target} has no precision '{precision}'.*exported by: coreai"):
            ExportSpec(cfg, target, precision)
    assert targets_for(precision, parse_targets("all")) == ["coreai"]
    plan = precision_plan(precision)
    assert applied_precision(plan, "coreai")["weights"] == plan["weights"]


def test_qtinysam_w8a8_is_not_a_core_ai_precision():
    with pytest.raises(ValueError, match="target coreai has no precision 'w8a8'"):
        convert("tinysam", targets="coreai", precision="w8a8", out_dir="unused")
    assert "coreai" in TARGETS and targets_for("w8a8", parse_targets("all")) == ["onnx", "tflite", "coreml"]
    assert all(p in TARGET_PRECISIONS["coreai"] for p in ("fp32", "fp16", "int8", "mixed"))


def test_cli_refuses_in_one_line(tmp_path):
    out = subprocess.run([sys.executable, "cli.py", "convert", "--target", "onnx", "--precision", "palette4",
                          "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "target onnx has no precision 'palette4'" in out.stderr and not any(tmp_path.iterdir())
