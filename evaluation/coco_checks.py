"""Ground truth is untrusted input: image file names must stay inside `--images`, and every RLE
segmentation must describe exactly its image (size = the image's height x width, within the pixel limit;
uncompressed counts non-negative integers summing to height x width; compressed counts decoded
here, strictly, with the same rules), so that pycocotools never reads or writes past its buffers
(its own decoder trusts every count) or allocates an unbounded mask."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from calibration_data.loaders import MAX_PIXELS
from mobile_runtime.rle import counts_to_string, string_to_counts


def image_path(images_dir: str | Path, file_name: Any) -> Path:
    """`images_dir / file_name`, refusing absolute names, `..` and symlinks that leave `images_dir`."""
    if not isinstance(file_name, str) or not file_name:
        raise ValueError(f"annotation image file_name {file_name!r} is not a file name")
    pure = PurePosixPath(file_name.replace("\\", "/"))
    if pure.is_absolute() or (len(file_name) > 1 and file_name[1] == ":") or ".." in pure.parts:
        raise ValueError(f"annotation image file_name {file_name!r} leaves the --images directory")
    root = Path(images_dir).resolve()
    path = (root / Path(*pure.parts)).resolve()
    if root not in path.parents:
        raise ValueError(f"annotation image file_name {file_name!r} leaves the --images directory")
    return path


def _check_rle(seg: dict, h: int, w: int, where: str) -> None:
    """Validate one RLE segmentation in place; a compressed one is decoded here (strictly) and written
    back in canonical form, so pycocotools only ever decodes counts that were checked."""
    size, counts = seg.get("size"), seg.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and [type(v) for v in size] == [int, int]):
        raise ValueError(f"{where}: RLE size must be [height, width], got {size!r}")
    if size != [h, w]:
        raise ValueError(f"{where}: RLE size {size} does not match the image's {h}x{w}")
    if isinstance(counts, str):
        try:
            decoded = string_to_counts(counts)
        except ValueError as exc:
            raise ValueError(f"{where}: RLE counts are not a valid compressed RLE ({exc})") from None
        if any(c < 0 for c in decoded) or sum(decoded) != h * w:
            raise ValueError(f"{where}: RLE counts are not a valid compressed RLE of a {h}x{w} mask")
        seg["counts"] = counts_to_string(decoded)
    elif isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise ValueError(f"{where}: RLE counts must be non-negative integers")
        if sum(counts) != h * w:
            raise ValueError(f"{where}: RLE counts sum to {sum(counts)}, the image has {h * w} pixels")
    else:
        raise ValueError(f"{where}: RLE counts must be a list or a string")


def check_ground_truth(coco_gt: Any) -> None:
    """Refuse images without a sane size and RLE segmentations that do not describe their image."""
    for img in coco_gt.dataset.get("images", []):
        h, w = img.get("height"), img.get("width")
        if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 and h * w <= MAX_PIXELS):
            raise ValueError(f"image {img.get('id')!r}: height and width must be positive ints with at most "
                             f"{MAX_PIXELS} pixels, got {h!r} x {w!r}")
    for ann in coco_gt.dataset.get("annotations", []):
        seg = ann.get("segmentation")
        if isinstance(seg, dict):
            img = coco_gt.imgs.get(ann.get("image_id"))
            if img is None:
                raise ValueError(f"annotation {ann.get('id')!r} refers to an unknown image_id {ann.get('image_id')!r}")
            _check_rle(seg, img["height"], img["width"], f"annotation {ann.get('id')!r}")
