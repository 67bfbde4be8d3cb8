"""ONNX fp16/int8 packages pass their parity gates; a failing gate writes nothing."""

from __future__ import annotations

import pytest

import converters.spec as spec_mod
from converters.api import ParityError, build_package
from converters.options import ConvertOptions


@pytest.mark.parametrize("precision,min_iou", [("fp16", 0.99), ("int8", 0.95)])
def test_reduced_precision_parity(tiny_model, tmp_path, precision, min_iou):
    model, info = tiny_model
    res = build_package(model, info, "onnx", ConvertOptions(precision=precision, out_dir=tmp_path))
    assert res.parity["passed"] and res.parity["metrics"]["mask_iou_mean"] >= min_iou
    n = sum(p.numel() for p in model.parameters())
    if precision == "fp16":  # one copy of every weight, 2 bytes each
        assert abs(res.size_bytes - 2 * n) < 0.15 * 2 * n
    else:  # MatMul/Gemm/Conv weights int8; norms, biases and small embeddings stay float
        assert res.size_bytes < 0.33 * 4 * n


@pytest.mark.slow  # a full extra export; atomicity on errors is covered fast by test_conv_onnx
def test_failing_parity_gate_writes_nothing(tiny_model, tmp_path, monkeypatch):
    model, info = tiny_model
    monkeypatch.setitem(spec_mod.PARITY_THRESHOLDS, "fp16", {"mask_iou_mean": 0.95, "embedding_rel_error": 1e-9})
    with pytest.raises(ParityError, match="embedding_rel_error"):
        build_package(model, info, "onnx", ConvertOptions(precision="fp16", out_dir=tmp_path))
    assert list(tmp_path.iterdir()) == []
