"""LiteRT packages: fp32, fp16 and int8 (one float conversion, reused) pass parity in ai_edge_litert."""

from __future__ import annotations

import json

import pytest

from converters.api import build_package
from converters.options import ConvertOptions
from converters.package import check_hashes


@pytest.mark.slow  # the float LiteRT conversion alone takes 40+ s; shared across precisions in one run
@pytest.mark.parametrize("precision,min_iou", [("fp32", 0.999), ("fp16", 0.99), ("int8", 0.95)])
def test_tflite_package_parity(tiny_model, tmp_path, precision, min_iou):
    model, info = tiny_model
    res = build_package(model, info, "tflite", ConvertOptions(precision=precision, out_dir=tmp_path))
    assert res.parity["passed"] and res.parity["metrics"]["mask_iou_mean"] >= min_iou
    manifest = json.loads((res.path / "manifest.json").read_text())
    dec = manifest["models"]["decoder"]
    assert dec["variants"] == {"1": {"file": "decoder.tflite", "signature": "k1", "sha256": dec["variants"]["1"]["sha256"]},
                               "16": {"file": "decoder.tflite", "signature": "k16",
                                      "sha256": dec["variants"]["16"]["sha256"]}}
    assert [t["name"] for t in dec["inputs"]] == [f"args_{i}" for i in range(5)]
    assert dec["inputs"][3]["logical_name"] == "mask_input"
    assert set(manifest["files"]) == {"README.md", "encoder.tflite", "decoder.tflite"}
    split = precision in ("fp32", "fp16")  # the split decoder: signatures of decoder.tflite, float packages only
    assert ("decoder_fast" in manifest["models"]) is split
    if split:
        assert manifest["models"]["decoder_fast"]["variants"]["64"]["signature"] == "fast_k64"
        assert res.parity["metrics"]["split_decoder_mask_iou_mean"] >= min_iou
    assert check_hashes(res.path) == []
