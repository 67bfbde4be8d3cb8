"""Held-out mIoU of a model for 1 click, 3 clicks and a GT box (masks at the original resolution).

Click protocol (deterministic, as in interactive-segmentation benchmarks): the first click is the GT
pixel farthest from the mask border; each next click goes to the larger error region (measured by
its largest distance to the region border), positive inside a missed part, negative inside a false
positive. One click answers with SAM's multimask rule (highest predicted IoU of tokens 1..3); more
clicks and boxes use token 0 (TinySAM: always tokens 1..3, highest predicted IoU).

``box_cross_iou`` checks that the model follows its prompt: the mean IoU between the masks that the
boxes of two different objects of one image give. A model that answers every prompt with one generic
"object" mask scores near 1 (and the same mIoU for 1 click, 3 clicks and a box); the ground truth
itself scores near 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt
from torch import nn

from .data import list_records, load_sample
from .prompts import Prompts, best_by_score, candidate_tokens


def interior_point(region: np.ndarray) -> tuple[tuple[int, int], float]:
    """((x, y), depth) of the pixel of ``region`` farthest from its border; depth 0 if empty."""
    if not region.any():
        return (0, 0), 0.0
    dt = distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dt)), dt.shape)
    return (int(x), int(y)), float(dt[y, x])


def next_click(gt: np.ndarray, pred: np.ndarray) -> tuple[tuple[int, int], int]:
    """Next corrective click ((x, y), label) for one mask."""
    fn_pt, fn_d = interior_point(gt & ~pred)
    fp_pt, fp_d = interior_point(pred & ~gt)
    return (fn_pt, 1) if fn_d >= fp_d else (fp_pt, 0)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two bool masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _predict(model: nn.Module, emb, coords, labels, is_box, n_points, input_size, original_size) -> np.ndarray:
    low, score = model.decode_prompts(emb, coords, labels)
    prompts = Prompts(coords, labels, is_box, n_points)
    best = best_by_score(low, score, candidate_tokens(prompts, bool(model.config.always_multimask)))
    full = model.postprocess_masks(best[:, None], input_size, original_size)[:, 0]
    return (full > model.mask_threshold).numpy()


@torch.no_grad()
def evaluate_image(model: nn.Module, sample, n_clicks: int = 3) -> dict[str, list[float]]:
    """Per-mask IoUs of one sample for ``1pt``, ``3pt`` (``n_clicks``) and ``box``, and the IoUs of
    the box masks of every pair of different objects (``box_cross_iou``)."""
    gts = sample.gt_original
    k = len(gts)
    res: dict[str, list[float]] = {"1pt": [], f"{n_clicks}pt": [], "box": [], "box_cross_iou": []}
    if k == 0:
        return res
    (oh, ow), (h, w) = sample.original_size, sample.input_size
    sx, sy = w / ow, h / oh
    emb = model.encode_image(model.preprocess(sample.image))
    clicks = [[interior_point(g)[0]] for g in gts]
    labels = [[1] for _ in gts]
    for r in range(1, n_clicks + 1):
        coords = torch.tensor([[[x * sx, y * sy] for x, y in c] + [[0.0, 0.0]] for c in clicks], dtype=torch.float32)
        lab = torch.tensor([lbl + [-1] for lbl in labels], dtype=torch.float32)
        pred = _predict(model, emb, coords, lab, torch.zeros(k, dtype=torch.bool), torch.full((k,), r),
                        sample.input_size, sample.original_size)
        if r == 1:
            res["1pt"] = [iou(p, g) for p, g in zip(pred, gts)]
        if r == n_clicks:
            res[f"{n_clicks}pt"] = [iou(p, g) for p, g in zip(pred, gts)]
            break
        for i in range(k):
            pt, lbl = next_click(gts[i], pred[i])
            clicks[i].append(pt)
            labels[i].append(lbl)
    boxes = []
    for g in gts:
        ys, xs = np.nonzero(g)
        boxes.append([[xs.min() * sx, ys.min() * sy], [xs.max() * sx, ys.max() * sy]])
    coords = torch.tensor(boxes, dtype=torch.float32)
    lab = torch.tensor([[2.0, 3.0]] * k)
    pred = _predict(model, emb, coords, lab, torch.ones(k, dtype=torch.bool), torch.zeros(k, dtype=torch.long),
                    sample.input_size, sample.original_size)
    res["box"] = [iou(p, g) for p, g in zip(pred, gts)]
    res["box_cross_iou"] = [iou(pred[i], pred[j]) for i in range(k) for j in range(i + 1, k)]
    return res


def evaluate(
    model: nn.Module,
    data_dir: str | Path,
    max_images: int | None = None,
    max_masks: int = 16,
    seed: int = 0,
    n_clicks: int = 3,
) -> dict[str, float]:
    """mIoU over held-out SA-1B-format data: ``{"1pt", "3pt", "box", "box_cross_iou", "masks", "images"}``."""
    records = list_records(data_dir)[:max_images]
    was_training = model.training
    model.eval()
    all_ious: dict[str, list[float]] = {}
    for i, rec in enumerate(records):
        sample = load_sample(rec, model.config, max_masks, np.random.default_rng([seed, i]), 1)
        for key, vals in evaluate_image(model, sample, n_clicks).items():
            all_ious.setdefault(key, []).extend(vals)
    model.train(was_training)
    out = {key: float(np.mean(v)) if v else float("nan") for key, v in all_ious.items()}
    out["masks"] = len(all_ious.get("box", []))
    out["images"] = len(records)
    return out
