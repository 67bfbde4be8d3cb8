"""SAM ViT-B (the large case) converts to every target at a small input size, through the parity gate.

The seeded model's absolute position embedding and relative-position tables are zeros (as upstream
initializes them), so they are filled with random values here: parity then also covers the position
paths a real checkpoint uses. 128 px keeps the 360 MB of weights but makes the encoder cheap: the
8 x 8 grid is zero-padded to one 14 x 14 window, and the global blocks attend over 64 tokens.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from converters.api import build_package, load_model
from converters.options import ConvertOptions
from converters.spec import PARITY_THRESHOLDS

pytestmark = pytest.mark.slow  # about 1.5 min on 2 cores: four 360 MB exports


@pytest.fixture(scope="module")
def vit_b():
    """Seeded SAM ViT-B at 128 px with random (non-zero) position tables, and its model info."""
    model, info = load_model("sam_vit_b", None, 128, seed=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.image_encoder.named_parameters():
            if name == "pos_embed" or name.endswith(("rel_pos_h", "rel_pos_w")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model, info


@pytest.mark.parametrize(("target", "precision"),
                         [("onnx", "fp32"), ("tflite", "fp32"), ("coreml", "fp32"), ("onnx", "int8")])
def test_sam_vit_b_converts_with_parity(vit_b, tmp_path, target: str, precision: str) -> None:
    model, info = vit_b
    res = build_package(model, info, target, ConvertOptions(precision=precision, out_dir=tmp_path))
    try:
        m = res.parity["metrics"]
        assert res.parity["passed"], res.parity["failures"]
        assert m["mask_iou_mean"] >= PARITY_THRESHOLDS[precision]["mask_iou_mean"]
        manifest = json.loads((res.path / "manifest.json").read_text())
        assert manifest["model"]["config"]["encoder"] == "vit" and manifest["model"]["trained"] is False
        weights_mb = sum(p.numel() for p in model.parameters()) * 4 / 1e6
        if precision == "fp32":
            assert m["embedding_rel_error"] < 1e-4
            # one copy of the weights, no folded tensors of note (ONNX also stores a SAM-signature decoder)
            assert weights_mb * 0.99 < res.size_bytes / 1e6 < weights_mb * 1.03
        else:
            assert res.size_bytes / 1e6 < weights_mb * 0.3
    finally:
        shutil.rmtree(res.path, ignore_errors=True)  # 360 MB each
