"""Everything mode over an exported package vs upstream SAM's automatic mask generator (dense) and a
hierarchical oracle assembled from the same upstream pieces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mobile_runtime import EverythingGenerator, amg, load_package
from mobile_runtime.everything import _Upsampler

PARAMS = dict(pred_iou_thresh=0.5, stability_score_thresh=0.6, stability_score_offset=1.0, box_nms_thresh=0.7)


@pytest.fixture(scope="module")
def session(onnx_package):
    return load_package(onnx_package)


def _match(mine: list[dict], ref: list[dict]) -> None:
    assert len(mine) == len(ref) > 0
    for a in mine:
        ious = [np.logical_and(a["segmentation"], b["segmentation"]).sum()
                / max(np.logical_or(a["segmentation"], b["segmentation"]).sum(), 1) for b in ref]
        j = int(np.argmax(ious))
        assert ious[j] >= 0.99
        assert abs(a["predicted_iou"] - ref[j]["predicted_iou"]) < 1e-3
        assert a["point_coords"][0] == pytest.approx(ref[j]["point_coords"][0])
        assert abs(a["stability_score"] - ref[j]["stability_score"]) < 1e-2
        assert np.abs(np.subtract(a["bbox"], ref[j]["bbox"])).max() <= 1
        assert abs(a["area"] - ref[j]["area"]) <= 0.01 * ref[j]["area"]


def _sa_generator(sam, **kw):
    from segment_anything import SamAutomaticMaskGenerator

    return SamAutomaticMaskGenerator(sam, **kw)


@pytest.mark.parametrize("nms", [0.7, 1.0])
def test_dense_matches_upstream(session, oracle_sam, test_image, nms: float) -> None:
    """With random weights most masks span the image, so box NMS at 0.7 keeps few: 1.0 keeps all."""
    params = dict(PARAMS, box_nms_thresh=nms)
    ref = _sa_generator(oracle_sam, points_per_side=12, **params).generate(test_image)
    gen = EverythingGenerator(session, mode="dense", points_per_side=12, **params)
    mine = gen.generate(test_image)
    _match(mine, ref)
    assert gen.last_stats["prompts_decoded"] == 144
    assert set(mine[0]) == set(ref[0])
    assert mine[0]["crop_box"] == ref[0]["crop_box"]
    assert len(mine) >= (10 if nms == 1.0 else 1)
    scores = [r["predicted_iou"] for r in mine]
    assert scores == sorted(scores, reverse=True)


def _hierarchical_oracle(sam, image, pps: int, high: float, nms: float) -> list[dict]:
    """TinySAM's hierarchical algorithm from upstream pieces: stage 1 without NMS, coverage from
    the kept masks' logits above `high`, stage-2 points, stage 2, one NMS over both stages."""
    from segment_anything import SamPredictor
    from torchvision.ops.boxes import batched_nms

    h, w = image.shape[:2]
    grid1 = amg.build_point_grid(pps // 4)
    no_nms = dict(PARAMS, box_nms_thresh=1.0)
    stage1 = _sa_generator(sam, points_per_side=None, point_grids=[grid1], **no_nms).generate(image)
    pred = SamPredictor(sam)
    pred.set_image(image)
    covered = np.zeros((h, w), bool)
    for r in stage1:
        logits, iou, _ = pred.predict(np.array(r["point_coords"]), np.array([1]), return_logits=True)
        k = int(np.argmin(np.abs(iou - r["predicted_iou"])))
        covered |= logits[k] > high
    grid2 = amg.hierarchical_points(grid1, covered.T, (h, w), pps)
    stage2 = (_sa_generator(sam, points_per_side=None, point_grids=[grid2], **no_nms).generate(image)
              if len(grid2) else [])
    both = stage2 + stage1
    boxes = torch.tensor([[r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2], r["bbox"][1] + r["bbox"][3]]
                          for r in both], dtype=torch.float32)
    keep = batched_nms(boxes, torch.tensor([r["predicted_iou"] for r in both]), torch.zeros(len(both)),
                       nms)
    return [both[i] for i in keep.tolist()], len(grid1) + len(grid2)


@pytest.mark.parametrize("nms", [0.7, 1.0])
def test_hierarchical_matches_oracle(session, oracle_sam, test_image, nms: float) -> None:
    high = 8.0
    ref, n_prompts = _hierarchical_oracle(oracle_sam, test_image, 16, high, nms)
    gen = EverythingGenerator(session, mode="hierarchical", points_per_side=16, high_score_thresh=high,
                              **dict(PARAMS, box_nms_thresh=nms))
    mine = gen.generate(test_image)
    _match(mine, ref)
    assert gen.last_stats["prompts_decoded"] == n_prompts < 16 * 16
    assert gen.last_stats["stage2_points"] > 0 and len(mine) >= (10 if nms == 1.0 else 1)
    assert "crop_box" not in mine[0]


def test_windowed_upsampling_is_exact(session, test_image) -> None:
    """The window trick gives the same thresholded masks and stability counts as full upsampling."""
    session.set_image(test_image)
    up = _Upsampler(session, -1.0)
    low = np.random.default_rng(0).normal(-4, 3, size=(20, 32, 32)).astype(np.float32)
    low[3] = -9.0  # nothing above any threshold
    full = session.postprocess(low)
    for i in range(len(low)):
        win, y0, x0 = up(low[i])
        for t in (-1.0, 0.0, 1.0):
            assert np.count_nonzero(win > t) == np.count_nonzero(full[i] > t)
        big = np.full(full[i].shape, -100.0, np.float32)
        big[y0 : y0 + win.shape[0], x0 : x0 + win.shape[1]] = win
        np.testing.assert_array_equal(big > 0, full[i] > 0)


def test_stacked_upsampling_equals_one_by_one(session, test_image) -> None:
    """A stack upsampled over its union window gives each mask the logits it gets alone and from full
    upsampling, up to float32 rounding (BLAS sums in an order that depends on the operand shapes), and
    the same pixels above every threshold."""
    from mobile_runtime import transforms as T

    session.set_image(test_image)
    up = _Upsampler(session, -1.0)
    rng = np.random.default_rng(1)
    low = rng.normal(-6, 2, size=(7, 32, 32)).astype(np.float32)
    low[0, 2:6, 3:9] += 9.0  # local masks in different places: the union window is their hull
    low[1, 20:30, 25:31] += 9.0
    low[4] = -9.0  # nothing above any threshold
    stack, y0, x0 = up(low)
    full = session.postprocess(low)
    assert 0 < stack.shape[1] * stack.shape[2] < full.shape[1] * full.shape[2]
    for i in range(len(low)):
        part = full[i, y0 : y0 + stack.shape[1], x0 : x0 + stack.shape[2]]
        np.testing.assert_allclose(stack[i], part, rtol=0, atol=1e-5)
        alone, ay0, ax0 = up(low[i])
        if alone.size:
            np.testing.assert_allclose(alone, stack[i, ay0 - y0 : ay0 - y0 + alone.shape[0],
                                                    ax0 - x0 : ax0 - x0 + alone.shape[1]], rtol=0, atol=1e-5)
        for t in (-1.0, 0.0, 1.0):
            assert np.count_nonzero(stack[i] > t) == np.count_nonzero(full[i] > t)
            assert np.count_nonzero(alone > t) == np.count_nonzero(full[i] > t)
    my, mx = T.postprocess_matrices(32, 128, session.input_size, session.original_size, "sam")
    batched = T.resize_matrices(low, my, mx)
    for i in range(len(low)):  # same operand shapes, yet OpenBLAS may pick another kernel for the batched
        # product by CPU (0.3.30 with the Haswell kernels: 9.5e-7 apart): float32 rounding, same pixels
        one = T.resize_matrices(low[i], my, mx)
        np.testing.assert_allclose(batched[i], one, rtol=0, atol=1e-5)
        for t in (-1.0, 0.0, 1.0):
            assert np.count_nonzero(batched[i] > t) == np.count_nonzero(one > t)


@pytest.mark.parametrize("mode", ["uncompressed_rle", "coco_rle"])
def test_output_modes(session, test_image, mode: str) -> None:
    from pycocotools import mask as mask_utils

    from mobile_runtime import rle as R

    base = EverythingGenerator(session, mode="dense", points_per_side=6, **PARAMS).generate(test_image)
    out = EverythingGenerator(session, mode="dense", points_per_side=6, output_mode=mode, **PARAMS).generate(test_image)
    assert len(out) == len(base) > 0
    for a, b in zip(out, base):
        seg = a["segmentation"]
        m = (R.rle_to_mask(seg) if mode == "uncompressed_rle"
             else mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}))
        np.testing.assert_array_equal(m.astype(bool), b["segmentation"])


def test_min_mask_region_area_runs(session, test_image) -> None:
    out = EverythingGenerator(session, mode="dense", points_per_side=6, min_mask_region_area=30,
                              **PARAMS).generate(test_image)
    for r in out:
        assert r["area"] == int(r["segmentation"].sum())


def test_generator_validation(session) -> None:
    with pytest.raises(ValueError, match="mode"):
        EverythingGenerator(session, mode="grid")
    with pytest.raises(ValueError, match="output_mode"):
        EverythingGenerator(session, output_mode="png")
    with pytest.raises(ValueError, match="points_per_side"):
        EverythingGenerator(session, mode="hierarchical", points_per_side=2)
