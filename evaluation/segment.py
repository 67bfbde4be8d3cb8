"""`segment`: masks for prompts (points, a box) or everything, written as PNGs, COCO RLE JSON and
an overlay image."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .adapter import PromptPredictor
from .overlay import render_overlay
from .writers import (
    atomic_output_dir,
    everything_record,
    prompt_record,
    record_mask,
    save_mask_png,
    write_json_atomic,
)


def _numbers(text: str, what: str, counts: tuple[int, ...]) -> list[float]:
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"{what} {text!r} must be comma-separated numbers") from None
    if len(values) not in counts:
        raise ValueError(f"{what} {text!r} must have {' or '.join(map(str, counts))} numbers")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{what} {text!r} contains a non-finite number")
    return values


def parse_point(text: str) -> tuple[float, float, int]:
    """``"x,y"`` or ``"x,y,label"`` (label 1 positive, 0 negative) -> (x, y, label)."""
    values = _numbers(text, "point", (2, 3))
    label = 1 if len(values) == 2 else values[2]
    if label not in (0.0, 1.0):
        raise ValueError(f"point {text!r}: label must be 1 (positive) or 0 (negative)")
    return values[0], values[1], int(label)


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``"x0,y0,x1,y1"`` (pixels, x1 > x0 and y1 > y0) -> the four numbers."""
    x0, y0, x1, y1 = _numbers(text, "box", (4,))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {text!r} must have x1 > x0 and y1 > y0")
    return x0, y0, x1, y1


def check_prompts_in_image(points: Sequence[tuple[float, float, int]], box: Sequence[float] | None,
                           size: tuple[int, int]) -> None:
    """Raise ValueError when a point or box corner lies outside the image (h, w)."""
    h, w = size
    for x, y, _ in points:
        if not (0 <= x <= w and 0 <= y <= h):
            raise ValueError(f"point ({x:g}, {y:g}) lies outside the {w}x{h} image")
    if box is not None and not (0 <= box[0] < w and 0 <= box[1] < h and box[2] <= w and box[3] <= h):
        raise ValueError(f"box {list(box)} does not lie inside the {w}x{h} image")


@dataclass
class SegmentResult:
    """Masks (largest-IoU first for prompts), their JSON records and the prompts that made them."""

    masks: list[np.ndarray]
    records: list[dict[str, Any]]
    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    box: np.ndarray | None = None
    stats: dict[str, Any] = field(default_factory=dict)


def segment_prompts(predictor: PromptPredictor, image: np.ndarray, points: Sequence[tuple[float, float, int]] = (),
                    box: Sequence[float] | None = None, multimask: bool = False) -> SegmentResult:
    """Predict for one prompt: the best of the 3 multimask outputs, or all 3 (sorted by IoU)."""
    if not points and box is None:
        raise ValueError("give at least one point or a box")
    predictor.set_image(image)
    coords = np.array([[x, y] for x, y, _ in points], dtype=np.float64) if points else None
    labels = np.array([lab for _, _, lab in points], dtype=np.int64) if points else None
    box_arr = np.asarray(box, dtype=np.float64) if box is not None else None
    masks, iou, _ = predictor.predict(coords, labels, box_arr, multimask_output=True)
    order = np.argsort(-iou, kind="stable")
    if not multimask:
        order = order[:1]
    plist = coords.tolist() if coords is not None else None
    llist = labels.tolist() if labels is not None else None
    blist = box_arr.tolist() if box_arr is not None else None
    kept = [masks[i] for i in order]
    records = [prompt_record(n, masks[i], float(iou[i]), plist, llist, blist) for n, i in enumerate(order)]
    return SegmentResult(kept, records, coords, labels, box_arr)


def segment_everything(generate: Callable[[np.ndarray], list[dict]], image: np.ndarray) -> SegmentResult:
    """All masks from an everything-mode generator, largest area first."""
    raw = sorted(generate(image), key=lambda r: -int(r.get("area", 0)))
    records = [everything_record(n, r) for n, r in enumerate(raw)]
    return SegmentResult([record_mask(r) for r in raw], records)


def write_segment(out: str | Path, image: np.ndarray, result: SegmentResult, meta: dict[str, Any],
                  overwrite: bool = False, inputs: tuple = ()) -> Path:
    """Write ``mask_000.png``..., ``masks.json`` (SA-1B-style: image, model, annotations) and
    ``overlay.png`` into `out`, atomically."""
    h, w = image.shape[:2]
    overlay = render_overlay(image, result.masks, result.points, result.labels, result.box)
    doc = {"image": {**meta.get("image", {}), "height": h, "width": w},
           "model": meta.get("model", {}), "annotations": result.records}
    with atomic_output_dir(out, overwrite, inputs) as tmp:
        for i, m in enumerate(result.masks):
            save_mask_png(tmp / f"mask_{i:03d}.png", m)
        write_json_atomic(tmp / "masks.json", doc, indent=None)
        Image.fromarray(overlay).save(tmp / "overlay.png")
    return Path(out)
