"""Mask metrics and SAM's simulated clicks (distance transform of the error regions)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Click:
    """One simulated click: pixel (x, y), positive (label 1) or negative (label 0), and its depth
    (distance in pixels to the nearest boundary of the region it was placed in)."""

    x: int
    y: int
    positive: bool
    depth: float

    @property
    def label(self) -> int:
        """1 for a positive click, 0 for a negative one."""
        return 1 if self.positive else 0


def _check_mask(name: str, mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{name} must be a 2-D mask, got shape {list(mask.shape)}")
    if mask.dtype.kind in "fc" and not np.isfinite(mask).all():  # NaN would count as True
        raise ValueError(f"{name} holds NaN/Inf values: not a mask")
    return mask.astype(bool, copy=False)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    a, b = _check_mask("a", a), _check_mask("b", b)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {list(a.shape)} vs {list(b.shape)}")
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


def best_ious(masks: list[np.ndarray], targets: list[np.ndarray]) -> np.ndarray:
    """For each of `masks` (non-empty list), its best IoU with any of `targets` (non-empty list)."""
    t = np.stack(targets).reshape(len(targets), -1)
    t_area = t.sum(1)
    out = []
    for m in masks:
        f = m.reshape(-1)
        inter = (t & f).sum(1)
        out.append(float(np.max(inter / np.maximum(t_area + f.sum() - inter, 1))))
    return np.asarray(out)


def boundary_distance(region: np.ndarray) -> np.ndarray:
    """Euclidean distance of every region pixel to the nearest pixel outside it.

    The image border counts as outside (the region is padded by one empty pixel), so a click is
    never placed against the border when a deeper point exists.
    """
    from scipy import ndimage  # click simulation only: the segment path runs without scipy

    region = _check_mask("region", region)
    padded = np.pad(region, 1, mode="constant", constant_values=False)
    return ndimage.distance_transform_edt(padded)[1:-1, 1:-1]


def farthest_point(region: np.ndarray) -> tuple[int, int, float] | None:
    """(x, y, depth) of the region pixel farthest from the region boundary; None if empty.

    Ties go to the first pixel in row-major order, so the choice is deterministic.
    """
    dist = boundary_distance(region)
    flat = int(np.argmax(dist))
    depth = float(dist.flat[flat])
    if depth <= 0.0:
        return None
    y, x = divmod(flat, dist.shape[1])
    return int(x), int(y), depth


def next_click(gt: np.ndarray, pred: np.ndarray | None, allow_negative: bool = True) -> Click | None:
    """The next simulated click for prediction `pred` of ground truth `gt` (SAM's protocol).

    False negatives (gt and not pred) call for a positive click, false positives (pred and not
    gt) for a negative one. The click goes to the farthest-from-boundary point of the error region
    whose farthest point is deeper (the larger error by its inscribed disc, as in SAM's interactive
    evaluation); ties go to the positive click. With `pred` None or empty this is the first click:
    the point of `gt` farthest from its boundary. Returns None when there is no error left (or only
    false positives and `allow_negative` is False).
    """
    gt = _check_mask("gt", gt)
    pred = np.zeros_like(gt) if pred is None else _check_mask("pred", pred)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {list(pred.shape)} differs from gt shape {list(gt.shape)}")
    fn = farthest_point(gt & ~pred)
    fp = farthest_point(pred & ~gt) if allow_negative else None
    if fn is None and fp is None:
        return None
    if fp is None or (fn is not None and fn[2] >= fp[2]):
        return Click(fn[0], fn[1], True, fn[2])
    return Click(fp[0], fp[1], False, fp[2])
