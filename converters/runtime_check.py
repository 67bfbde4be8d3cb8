"""Run a package the way an app does: `mobile_runtime.load_package` (hashes, manifest digest, paths) and
its `Session`, with the package's own pre- and post-processing read from the manifest (normalization
constants, resize rule, mask threshold), on the parity photos and prompts; compare its final masks
at the photo's size with the reference predictor's.

`check_parity` feeds the models prepared tensors, so it cannot see an edited `pixel_mean` or
`mask_threshold`; this check can.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

RUNTIME_PROMPTS = 4  # prompts of the fixed parity set per photo


def _prompt(index: int, family: str, h: int, w: int) -> dict:
    from converters.parity_data import _FIXED_PROMPTS

    points, box = _FIXED_PROMPTS[index % len(_FIXED_PROMPTS)]
    if family != "sam":  # EfficientSAM takes positive points only
        points = tuple(p for p in points if p[2] == 1)
    return {"points": np.array([[x * w, y * h] for x, y, _ in points], np.float64) if points else None,
            "labels": np.array([lab for *_, lab in points], np.int64) if points else None,
            "box": np.array([box[0] * w, box[1] * h, box[2] * w, box[3] * h], np.float64) if box else None}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def check_runtime(model: torch.nn.Module, package_dir: Path, limit: float,
                  calibration: str | Path | None = None) -> dict:
    """{"metrics", "failures"}: runtime-vs-reference mask IoU (mean must reach `limit`) over the parity
    photos and the first `RUNTIME_PROMPTS` fixed prompts; any load error or NaN output is a failure."""
    from converters.parity_data import load_parity_images
    from mobile_runtime import load_package
    from tinysam.predictor import SamPredictor

    try:
        session = load_package(package_dir)
    except ValueError as exc:
        return {"metrics": {}, "failures": [f"runtime refuses the package: {str(exc).splitlines()[0]}"]}
    predictor = SamPredictor(model)
    ious: list[float] = []
    try:
        for _, rgb in load_parity_images(calibration):
            session.set_image(rgb)
            predictor.set_image(rgb)
            h, w = rgb.shape[:2]
            for i in range(RUNTIME_PROMPTS):
                p = _prompt(i, model.config.family, h, w)
                got, _, _ = session.predict(p["points"], p["labels"], p["box"], multimask_output=False)
                ref, _, _ = predictor.predict(p["points"], p["labels"], p["box"], multimask_output=False)
                ious.append(_iou(got[0], ref[0]))
    except ValueError as exc:
        return {"metrics": {}, "failures": [f"runtime run failed: {str(exc).splitlines()[0]}"]}
    finally:
        session.close()
    metrics = {"runtime_mask_iou_mean": float(np.mean(ious)), "runtime_mask_iou_min": float(np.min(ious)),
               "runtime_masks_compared": len(ious)}
    failures = ([] if metrics["runtime_mask_iou_mean"] >= limit else
                [f"runtime_mask_iou_mean = {metrics['runtime_mask_iou_mean']:.6g} (limit {limit:g}; the package "
                 "run with its own pre/post-processing disagrees with the reference)"])
    return {"metrics": metrics, "failures": failures}
