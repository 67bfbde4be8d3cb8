"""Everything mode on a converter-made fp32 package returns `tinysam`'s generators' masks.

Random weights give almost no mask that passes the filters, so the seeded TinySAM's mask decoder is
edited (tests/tinysam/oracle_sam.py `structure_decoder`: sharp, patch-constant logits; plus an IoU
head bias so predicted IoUs spread around the threshold) before the package is built from it. The
same weights, image and parameters go to the reference generator and to the runtime.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mobile_runtime import EverythingGenerator, load_package

SIZE = 128
ORACLE = Path(__file__).resolve().parents[1] / "tinysam" / "oracle_sam.py"
PARAMS = dict(points_per_side=16, pred_iou_thresh=0.7, stability_score_thresh=0.7, stability_score_offset=1.0)
HIGH = 4.0  # hierarchical coverage threshold (a logit): 8.5 is never reached by these weights


def load_oracle():
    """The test oracle module (tests/tinysam/oracle_sam.py), loaded once (bench/everything_speed.py uses it too)."""
    if "oracle_sam" in sys.modules:
        return sys.modules["oracle_sam"]
    spec = importlib.util.spec_from_file_location("oracle_sam", ORACLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["oracle_sam"] = module
    spec.loader.exec_module(module)
    return module


def structured_tinysam(image_size: int = SIZE):
    """Seeded TinySAM (128 px by default) whose masks pass the everything-mode filters."""
    from converters.api import load_model

    model, info = load_model("tinysam", None, image_size, seed=0)
    load_oracle().structure_decoder(model, shift=6.0, gain=120.0)
    with torch.no_grad():
        model.mask_decoder.iou_prediction_head.layers[-1].bias.add_(0.85)
    info = dict(info, seed=None, note="decoder edited for everything-mode tests")
    return model, info


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from converters.api import build_package
    from converters.options import ConvertOptions

    model, info = structured_tinysam()
    path = build_package(model, info, "onnx", ConvertOptions(precision="fp32", out_dir=tmp_path_factory.mktemp("ev-pkg"), verify=False)).path
    return model, load_package(path)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return load_oracle().block_image(96, 128, seed=0)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / max(np.logical_or(a, b).sum(), 1))


def _match(mine: list[dict], ref: list[dict]) -> None:
    """Same count; each mask matched (same prompt point, predicted IoU close) with mask IoU >= 0.99."""
    assert len(mine) == len(ref)
    used: set[int] = set()
    for a in mine:
        cands = [j for j, b in enumerate(ref) if j not in used and np.allclose(a["point_coords"], b["point_coords"])
                 and abs(a["predicted_iou"] - b["predicted_iou"]) < 1e-3]
        assert cands, f"no reference mask for point {a['point_coords']}"
        j = max(cands, key=lambda j: _iou(a["segmentation"], ref[j]["segmentation"]))
        assert _iou(a["segmentation"], ref[j]["segmentation"]) >= 0.99
        assert abs(a["stability_score"] - ref[j]["stability_score"]) < 1e-2
        used.add(j)


@pytest.mark.parametrize("nms", [0.7, 1.0])
def test_hierarchical_matches_reference(setup, image, nms: float) -> None:
    from tinysam import SamHierarchicalMaskGenerator

    model, session = setup
    ref_gen = SamHierarchicalMaskGenerator(model, high_score_thresh=HIGH, box_nms_thresh=nms, **PARAMS)
    ref = ref_gen.generate(image)
    gen = EverythingGenerator(session, mode="hierarchical", high_score_thresh=HIGH, box_nms_thresh=nms, **PARAMS)
    mine = gen.generate(image)
    _match(mine, ref)
    assert gen.last_stats["prompts_decoded"] == ref_gen.last_stats["prompts_decoded"]
    assert ref_gen.last_stats["covered_pixels"] > 0 and ref_gen.last_stats["stage2_skipped"] > 0
    assert len(mine) >= (5 if nms == 1.0 else 1)


@pytest.mark.parametrize("nms", [0.7, 1.0])
def test_dense_matches_reference(setup, image, nms: float) -> None:
    from tinysam import SamAutomaticMaskGenerator

    model, session = setup
    ref = SamAutomaticMaskGenerator(model, box_nms_thresh=nms, **PARAMS).generate(image)
    gen = EverythingGenerator(session, mode="dense", box_nms_thresh=nms, **PARAMS)
    mine = gen.generate(image)
    _match(mine, ref)
    assert gen.last_stats["prompts_decoded"] == 256
    assert len(mine) >= (5 if nms == 1.0 else 1)
