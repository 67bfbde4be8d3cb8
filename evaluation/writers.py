"""Output writers: COCO RLE, SAM-format records, mask PNGs, atomic files and directories.

Nothing is left half-written: files go to a temporary sibling first and are moved into place
only when complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from calibration_data.atomic_dir import replaced_atomically
from mobile_runtime.rle import coco_encode_rle, mask_to_rle, rle_to_mask, string_to_counts


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE of a 2-D boolean mask: {"size": [h, w], "counts": str}."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {list(mask.shape)}")
    return coco_encode_rle(mask_to_rle(mask.astype(bool)))


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """Boolean mask [h, w] of a COCO RLE (compressed string counts or uncompressed list counts)."""
    counts = rle.get("counts")
    if isinstance(counts, str):
        counts = string_to_counts(counts)
    return rle_to_mask({"size": list(rle["size"]), "counts": counts})


def mask_bbox_xywh(mask: np.ndarray) -> list[float]:
    """Tight XYWH box of a mask in pixels ([0, 0, 0, 0] for an empty mask), as SAM records it."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    x0, y0 = int(xs.min()), int(ys.min())
    return [float(x0), float(y0), float(xs.max() - x0), float(ys.max() - y0)]


def to_jsonable(obj: Any) -> Any:
    """Recursively turn numpy scalars/arrays and tuples into plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


def prompt_record(index: int, mask: np.ndarray, predicted_iou: float, point_coords: list | None,
                  point_labels: list | None, box: list | None) -> dict[str, Any]:
    """A SAM-format record (segmentation as COCO RLE) for a mask predicted from a prompt."""
    h, w = mask.shape
    return {
        "id": index,
        "segmentation": encode_rle(mask),
        "area": int(mask.sum()),
        "bbox": mask_bbox_xywh(mask),
        "predicted_iou": float(predicted_iou),
        "point_coords": point_coords or [],
        "point_labels": point_labels or [],
        "box": box,
        "crop_box": [0, 0, w, h],
    }


def everything_record(index: int, record: dict[str, Any]) -> dict[str, Any]:
    """A generator record (binary_mask or any RLE output mode) with its segmentation as COCO RLE."""
    seg = record["segmentation"]
    out = {k: to_jsonable(v) for k, v in record.items() if k != "segmentation"}
    out["segmentation"] = encode_rle(seg) if isinstance(seg, np.ndarray) else to_jsonable(seg)
    if isinstance(out["segmentation"].get("counts"), list):  # uncompressed RLE -> compressed
        out["segmentation"] = encode_rle(decode_rle(out["segmentation"]))
    return {"id": index, **out}


def record_mask(record: dict[str, Any]) -> np.ndarray:
    """Boolean mask of a generator record in any output mode."""
    seg = record["segmentation"]
    return np.asarray(seg, dtype=bool) if isinstance(seg, np.ndarray) else decode_rle(seg)


def save_mask_png(path: str | Path, mask: np.ndarray) -> None:
    """Write a boolean mask as an 8-bit grayscale PNG with values 0 and 255."""
    Image.fromarray(np.where(np.asarray(mask, dtype=bool), 255, 0).astype(np.uint8), mode="L").save(path)


def write_json_atomic(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """Write JSON to a temporary file next to `path`, then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(to_jsonable(obj), f, indent=indent)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def check_output_dir(out: str | Path, overwrite: bool) -> Path:
    """Refuse an existing non-empty output directory (or a file) unless `overwrite`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output path {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"output directory {out} is not empty (pass --overwrite to replace it)")
    return out


@contextlib.contextmanager
def atomic_output_dir(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory next to `out`; on success it replaces `out`, on error it is removed."""
    out = check_output_dir(out, overwrite)
    with replaced_atomically(out) as tmp:
        yield tmp
