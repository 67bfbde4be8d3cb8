"""Prompt validation and assembly into the decoder's fixed point slots.

Labels: -2 empty slot, -1 padding point, 0 negative, 1 positive, 2 box top-left, 3 box bottom-right.

SAM family: points first, then the box as two corners (2, 3); when there are points but no box,
ONE padding point (0, 0) with label -1 follows (upstream `pad=True`); remaining slots get -2.
EfficientSAM: points, then box corners, then padding points (-1) up to `max_points`, truncated to
`max_points` like the reference; remaining slots get -2.

Coordinates outside the image are accepted (the reference accepts them too) and mapped by the same
linear transform; what the model makes of them is the model's business.
"""

from __future__ import annotations

import numpy as np

from . import transforms as T
from .package_format import LABEL

EMPTY, PAD = int(LABEL.EMPTY_SLOT), int(LABEL.PAD)


def validate_prompt(points, labels, box) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Check one prompt's points (n,2), labels (n,) and box (4,) and return them as float64/int64 arrays."""
    if (points is None) != (labels is None):
        raise ValueError("points and labels must be given together")
    if points is not None:
        points = np.asarray(points, dtype=np.float64)
        labels_arr = np.asarray(labels)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"points must have shape (n, 2), got {points.shape}")
        if labels_arr.shape != (points.shape[0],):
            raise ValueError(f"labels must have shape ({points.shape[0]},), got {labels_arr.shape}")
        if not np.all(np.isfinite(points)):
            raise ValueError("points contain NaN or infinite coordinates")
        if labels_arr.size and (
            not np.all(np.isfinite(labels_arr.astype(np.float64)))
            or not np.all(np.isin(labels_arr.astype(np.float64), (0.0, 1.0)))
        ):
            raise ValueError(f"labels must be 0 (negative) or 1 (positive), got {np.unique(labels_arr).tolist()}")
        labels = labels_arr.astype(np.int64)
        if points.shape[0] == 0:
            points, labels = None, None
    if box is not None:
        box = np.asarray(box, dtype=np.float64).reshape(-1)
        if box.shape != (4,):
            raise ValueError(f"box must have 4 numbers (x0, y0, x1, y1), got shape {box.shape}")
        if not np.all(np.isfinite(box)):
            raise ValueError("box contains NaN or infinite coordinates")
        if box[2] < box[0] or box[3] < box[1]:
            raise ValueError(f"box must have x1 >= x0 and y1 >= y0, got {box.tolist()}")
    return points, labels, box


def layout_prompt(
    points: np.ndarray | None,
    labels: np.ndarray | None,
    box: np.ndarray | None,
    family: str,
    slots: int,
    max_points: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Place already-transformed points/box into `slots` slots -> (coords [slots,2] f32, labels [slots] i32)."""
    coords_list: list[np.ndarray] = []
    label_list: list[np.ndarray] = []
    if points is not None:
        coords_list.append(points.reshape(-1, 2))
        label_list.append(labels.reshape(-1))
    if box is not None:
        coords_list.append(box.reshape(2, 2))
        label_list.append(np.array([LABEL.BOX_TL, LABEL.BOX_BR]))
    if family == "sam":
        if points is not None and box is None:
            coords_list.append(np.zeros((1, 2)))
            label_list.append(np.array([PAD]))
    elif family == "efficientsam":
        n = sum(len(x) for x in label_list)
        limit = max_points or slots
        if n < limit:
            coords_list.append(np.zeros((limit - n, 2)))
            label_list.append(np.full(limit - n, PAD))
    else:
        raise ValueError(f"unknown prompt family {family!r}")
    coords = np.concatenate(coords_list) if coords_list else np.zeros((0, 2))
    lab = np.concatenate(label_list) if label_list else np.zeros((0,), np.int64)
    if family == "efficientsam" and max_points:
        coords, lab = coords[:max_points], lab[:max_points]
    if len(lab) > slots:
        raise ValueError(
            f"prompt needs {len(lab)} point slots (points + box corners + padding) but the decoder has {slots}"
        )
    out_c = np.zeros((slots, 2), dtype=np.float32)
    out_l = np.full((slots,), EMPTY, dtype=np.int32)
    out_c[: len(lab)] = coords
    out_l[: len(lab)] = lab
    return out_c, out_l


def assemble_prompt(
    points,
    labels,
    box,
    *,
    original_size: tuple[int, int],
    image_size: int,
    resize: str,
    family: str,
    slots: int,
    max_points: int | None = None,
    allow_empty: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate one prompt in original-image pixels and lay it out in the model input frame.

    `allow_empty` accepts a prompt with neither points nor box (a mask-only SAM prompt).
    """
    points, labels, box = validate_prompt(points, labels, box)
    if points is None and box is None and not allow_empty:
        raise ValueError("no prompt: give points with labels, a box, or (SAM family) a mask_input")
    with np.errstate(over="ignore"):
        if points is not None:
            points = T.apply_coords(points, original_size, image_size, resize).astype(np.float32)
        if box is not None:
            box = T.apply_boxes(box, original_size, image_size, resize).astype(np.float32)
    for name, value in (("points", points), ("box", box)):
        if value is not None and not np.all(np.isfinite(value)):
            raise ValueError(f"{name} coordinates are too large (they overflow float32 in the model frame)")
    return layout_prompt(points, labels, box, family, slots, max_points)


def assemble_prompts(
    points,
    labels,
    boxes,
    **kwargs,
) -> tuple[np.ndarray, np.ndarray]:
    """K prompts at once: points [K,n,2] + labels [K,n] and/or boxes [K,4] -> ([K,slots,2], [K,slots])."""
    k = None
    if points is not None:
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 3:
            raise ValueError(f"batched points must have shape (K, n, 2), got {points.shape}")
        if labels is None:
            raise ValueError("points and labels must be given together")
        labels = np.asarray(labels)
        if labels.ndim != 2 or labels.shape[0] != points.shape[0]:
            raise ValueError(f"batched labels must have shape ({points.shape[0]}, n), got {labels.shape}")
        k = points.shape[0]
    elif labels is not None:
        raise ValueError("points and labels must be given together")
    if boxes is not None:
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"batched boxes must have shape (K, 4), got {boxes.shape}")
        if k is not None and boxes.shape[0] != k:
            raise ValueError(f"got {k} point prompts but {boxes.shape[0]} boxes")
        k = boxes.shape[0]
    if k is None:
        raise ValueError("no prompt: give points with labels and/or boxes")
    out = [
        assemble_prompt(
            None if points is None else points[i],
            None if labels is None else labels[i],
            None if boxes is None else boxes[i],
            **kwargs,
        )
        for i in range(k)
    ]
    return np.stack([c for c, _ in out]), np.stack([lab for _, lab in out])
