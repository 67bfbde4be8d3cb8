"""The protocols give the same answers on an exported ONNX package (mobile runtime) as on the
PyTorch reference it was exported from."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation import clicks, coco
from evaluation.adapter import PromptPredictor
from evaluation.metrics import mask_iou
from evaluation.writers import decode_rle


@pytest.mark.slow
def test_box_and_click_protocols_match_across_backends(coco_set, seeded_tinysam, tmp_path) -> None:
    import mobile_runtime
    from converters.api import build_package
    from converters.options import ConvertOptions

    model, predictor = seeded_tinysam
    info = {"name": "tinysam", "config": model.config.to_dict(), "checkpoint_sha256": None, "trained": False}
    pkg = build_package(model, info, "onnx", ConvertOptions(precision="fp32", out_dir=tmp_path, verify=False))
    session = mobile_runtime.load_package(pkg.path)
    gt = coco.load_coco(coco_set.annotations)
    dets = coco.load_detections(coco_set.detections, gt)
    ref, ids = coco.run_box_protocol(PromptPredictor(predictor), gt, dets, coco_set.images_dir, limit=2)
    rt, _ = coco.run_box_protocol(PromptPredictor(session), gt, dets, coco_set.images_dir, limit=2)
    ious = [mask_iou(decode_rle(a["segmentation"]), decode_rle(b["segmentation"])) for a, b in zip(ref, rt, strict=True)]
    assert np.mean(ious) > 0.98, ious
    a = clicks.run_click_protocol(PromptPredictor(predictor), gt, coco_set.images_dir, 2, limit=1)
    b = clicks.run_click_protocol(PromptPredictor(session), gt, coco_set.images_dir, 2, limit=1)
    assert all(abs(a["miou"][k] - b["miou"][k]) < 0.02 for k in a["miou"])
