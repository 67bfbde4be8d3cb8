"""TinySAM's zero-shot instance segmentation protocol on COCO-format data (box prompts).

For each detection (COCO results format: image_id, category_id, bbox XYWH, score): set the image
(once per image id), predict with the box as XYXY, take the 3 multimask outputs, keep the one with
the highest predicted IoU, RLE-encode it, and score everything with COCOeval("segm").
"""

from __future__ import annotations

import contextlib
import io
import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .adapter import PromptPredictor
from .images import load_rgb
from .writers import encode_rle

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
TABLE_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def load_coco(annotations: str | Path):
    """pycocotools COCO object of an instances JSON (quiet; one-line error if unreadable)."""
    from pycocotools.coco import COCO

    path = Path(annotations)
    if not path.is_file():
        raise ValueError(f"annotations file not found: {path}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(path))
    except (json.JSONDecodeError, KeyError, TypeError, AssertionError) as exc:
        raise ValueError(f"{path} is not a COCO instances file: {exc}") from None
    from evaluation.coco_checks import check_ground_truth

    check_ground_truth(coco)
    return coco


def load_detections(path: str | Path, coco_gt: Any) -> list[dict[str, Any]]:
    """Validated detections (COCO results format) whose image ids exist in the ground truth."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"detections file not found: {path}")
    try:
        dets = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(dets, list):
        raise ValueError(f"{path} must hold a JSON list of detections (COCO results format)")
    known = set(coco_gt.getImgIds())
    out = []
    for i, d in enumerate(dets):
        try:
            x, y, w, h = (float(v) for v in d["bbox"])
            det = {"image_id": int(d["image_id"]), "category_id": int(d["category_id"]),
                   "bbox": [x, y, w, h], "score": float(d.get("score", 1.0))}
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: detection {i} needs image_id, category_id and bbox [x, y, w, h]") from None
        if det["image_id"] not in known:
            raise ValueError(f"{path}: detection {i} refers to image_id {det['image_id']}, not in the annotations")
        if w <= 0 or h <= 0 or not np.isfinite([x, y, w, h]).all():
            raise ValueError(f"{path}: detection {i} has an empty or invalid bbox {d['bbox']}")
        out.append(det)
    return out


def select_image_ids(image_ids: Any, limit: int | None) -> list[int]:
    """Sorted unique image ids, the first `limit` of them when given."""
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be positive, got {limit}")
    ids = sorted({int(i) for i in image_ids})
    return ids[:limit] if limit is not None else ids


def image_for(coco_gt: Any, image_id: int, images_dir: str | Path) -> np.ndarray:
    """The RGB image of `image_id`, checked against the annotated height and width."""
    info = coco_gt.loadImgs([image_id])[0]
    from evaluation.coco_checks import image_path

    image = load_rgb(image_path(images_dir, info["file_name"]))
    expected = (int(info.get("height", image.shape[0])), int(info.get("width", image.shape[1])))
    if image.shape[:2] != expected:
        raise ValueError(f"image {info['file_name']} is {image.shape[1]}x{image.shape[0]}, "
                         f"annotations say {expected[1]}x{expected[0]}")
    return image


def xywh_to_xyxy(bbox: list[float]) -> np.ndarray:
    """COCO XYWH -> XYXY."""
    x, y, w, h = bbox
    return np.array([x, y, x + w, y + h], dtype=np.float64)


def run_box_protocol(predictor: PromptPredictor, coco_gt: Any, detections: list[dict[str, Any]],
                     images_dir: str | Path, limit: int | None = None,
                     progress: Callable[[int, int], None] | None = None) -> tuple[list[dict[str, Any]], list[int]]:
    """Segment every detection of the selected images; returns (COCO segm results, image ids)."""
    by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for d in detections:
        by_image[d["image_id"]].append(d)
    img_ids = select_image_ids(by_image, limit)
    results = []
    for n, image_id in enumerate(img_ids):
        predictor.set_image(image_for(coco_gt, image_id, images_dir))
        for d in by_image[image_id]:
            mask, _ = predictor.predict_best(box=xywh_to_xyxy(d["bbox"]), multimask_output=True)
            results.append({"image_id": image_id, "category_id": d["category_id"],
                            "segmentation": encode_rle(mask), "score": d["score"]})
        if progress is not None:
            progress(n + 1, len(img_ids))
    return results, img_ids


def evaluate_segm(coco_gt: Any, results: list[dict[str, Any]], img_ids: list[int] | None = None) -> dict[str, float]:
    """COCOeval("segm") over `img_ids` (all annotated images when None) -> the 12 summary stats."""
    from pycocotools.cocoeval import COCOeval

    if not results:
        raise ValueError("no predictions to evaluate")
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes([dict(r) for r in results])
        ev = COCOeval(coco_gt, coco_dt, "segm")
        if img_ids is not None:
            ev.params.imgIds = list(img_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, ev.stats, strict=True)}


def format_table(stats: dict[str, float], names: tuple[str, ...] = TABLE_STATS) -> str:
    """Two-line table of the stats in percent ("n/a" where COCOeval reports -1: no such objects)."""
    cells = [("n/a" if stats[k] < 0 else f"{100 * stats[k]:.1f}") for k in names]
    widths = [max(len(k), len(c)) for k, c in zip(names, cells, strict=True)]
    head = "  ".join(k.rjust(w) for k, w in zip(names, widths, strict=True))
    row = "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
    return f"{head}\n{row}"
