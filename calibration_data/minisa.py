"""mini-SA: a seeded generator of small SA-1B-format data sets of synthetic scenes with exact masks.

Each image has a textured background and `min_objects..max_objects` objects (ellipses, polygons, stars,
rings with holes, rounded rectangles, blobs) of sizes from a few pixels to half the image, filled with solid
colours, gradients, stripes or textures cut from the bundled photos. Objects overlap; each annotation is
exactly the object's VISIBLE region (objects are generated front to back, each one only gets the pixels
no earlier (nearer) object took; an object with fewer than `MIN_VISIBLE_AREA` visible pixels is discarded
before it is painted, so no pixel ever belongs to a discarded object). Mild Gaussian noise (default
std 2) and a mild Gaussian blur (default off; it softens edges the way a camera does, so a few edge
pixels mix the colours of neighbouring objects while the masks stay the exact visible regions) are optional.

Images are written as lossless PNG (not JPEG): JPEG ringing and chroma subsampling would bleed colour
across mask edges, so a pixel's colour would no longer come only from the object its mask assigns it to.
The JSON layout is SA-1B's; `predicted_iou` and `stability_score` are 1.0 because the masks are exact.

Layout: `out_dir/<split>/sa_<k>.png` + `sa_<k>.json` (k = 000000, 000001, ...) and `out_dir/dataset.json`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from calibration_data.atomic_dir import replaced_atomically
from calibration_data.sa1b import encode_mask
from calibration_data.shapes import SHAPES, gradient_fill, random_fill, texture_fill

GENERATOR_VERSION = "1.0"
MIN_VISIBLE_AREA = 6
SPLITS = ("train", "val", "test")
_TEXTURE_SIDE = 320


def _texture_photos() -> list[np.ndarray]:
    """The bundled photos, downscaled (long side <= 320) for fast texture cuts."""
    from calibration_data.bundled import bundled_images
    from calibration_data.loaders import load_image

    out = []
    for path in bundled_images():
        im = Image.fromarray(load_image(path))
        im.thumbnail((_TEXTURE_SIDE, _TEXTURE_SIDE), Image.BILINEAR)
        out.append(np.asarray(im))
    return out


def _radius(rng: np.random.Generator, size: int) -> float:
    """Object radius, log-uniform from 2 px (tiny) to size/4 (diameter half the image)."""
    return float(np.exp(rng.uniform(np.log(2.0), np.log(max(size / 4.0, 2.5)))))


def _annotation(mask: np.ndarray, ann_id: int, hw: tuple[int, int]) -> dict:
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    dist = ndimage.distance_transform_edt(np.pad(mask[y0:y1, x0:x1], 1))[1:-1, 1:-1]
    py, px = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return {
        "id": ann_id,
        "segmentation": encode_mask(mask),
        "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
        "area": int(mask.sum()),
        "point_coords": [[float(x0 + px) + 0.5, float(y0 + py) + 0.5]],
        "predicted_iou": 1.0,
        "stability_score": 1.0,
        "crop_box": [0.0, 0.0, float(hw[1]), float(hw[0])],
    }


def render_scene(rng: np.random.Generator, hw: tuple[int, int], n_objects: int, photos: list[np.ndarray],
                 noise_std: float = 2.0, blur_sigma: float = 0.0) -> tuple[np.ndarray, list[np.ndarray]]:
    """(RGB uint8 image, visible masks front-to-back) of one scene with up to `n_objects` objects."""
    h, w = hw
    background = texture_fill(rng, hw, photos) if photos and rng.random() < 0.6 else gradient_fill(rng, hw)
    image = background.copy()
    covered = np.zeros(hw, dtype=bool)
    masks: list[np.ndarray] = []
    names = list(SHAPES)
    attempts = 0
    while len(masks) < n_objects and attempts < 8 * n_objects:
        attempts += 1
        shape = SHAPES[names[int(rng.integers(len(names)))]]
        visible = shape(rng, hw, _radius(rng, min(h, w))) & ~covered
        if int(visible.sum()) < MIN_VISIBLE_AREA:
            continue
        fill = random_fill(rng, hw, photos)
        image[visible] = fill[visible]
        covered |= visible
        masks.append(visible)
    if blur_sigma > 0:
        image = ndimage.gaussian_filter(image, sigma=(blur_sigma, blur_sigma, 0), mode="nearest")
    if noise_std > 0:
        image = image + rng.normal(0.0, noise_std, image.shape).astype(np.float32)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), masks


def _write_image(out: Path, k: int, image: np.ndarray, masks: list[np.ndarray]) -> int:
    h, w = image.shape[:2]
    name = f"sa_{k:06d}"
    Image.fromarray(image).save(out / f"{name}.png", compress_level=6)
    anns = [_annotation(m, k * 1000 + j, (h, w)) for j, m in enumerate(masks)]
    record = {"image": {"image_id": k, "width": w, "height": h, "file_name": f"{name}.png"}, "annotations": anns}
    (out / f"{name}.json").write_text(json.dumps(record))
    return len(anns)


def _update_manifest(root: Path, split: str, entry: dict) -> None:
    path = root / "dataset.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    if not isinstance(data, dict) or data.get("generator") != "minisa":
        data = {}
    data.update({"generator": "minisa", "version": GENERATOR_VERSION})
    data.setdefault("splits", {})[split] = entry
    tmp = root / f".dataset.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _check_args(n_images: int, hw: tuple[int, int], split: str, min_objects: int, max_objects: int,
                noise_std: float, blur_sigma: float) -> None:
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    if min(hw) < 16 or max(hw) > 4096:
        raise ValueError(f"image_size must be between 16 and 4096 pixels per side, got {hw}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not 1 <= min_objects <= max_objects:
        raise ValueError(f"need 1 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    if not 0 <= noise_std <= 50:
        raise ValueError(f"noise_std must be between 0 and 50, got {noise_std}")
    if not 0 <= blur_sigma <= 5:
        raise ValueError(f"blur_sigma must be between 0 and 5 pixels, got {blur_sigma}")


def generate_minisa(out_dir: str | Path, n_images: int, image_size: int | tuple[int, int] = 256, seed: int = 0,
                    split: str = "train", min_objects: int = 5, max_objects: int = 25, progress: bool = True,
                    overwrite: bool = False, noise_std: float = 2.0, blur_sigma: float = 0.0) -> Path:
    """Write `n_images` mini-SA scenes to `out_dir/<split>/` and return that split directory.

    `image_size` is the side of square images or (height, width). Deterministic: image k depends only on
    (seed, k, size, object counts, noise, blur). Written to a temporary directory and renamed into place; an
    existing split is refused (ValueError) unless `overwrite=True`. `out_dir/dataset.json` records seed,
    counts, size and generator version per split.
    """
    from tqdm import tqdm

    hw = (image_size, image_size) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))
    _check_args(n_images, hw, split, min_objects, max_objects, noise_std, blur_sigma)
    root = Path(out_dir)
    final = root / split
    if final.exists() and not overwrite:
        raise ValueError(f"mini-SA split already exists: {final} (pass overwrite=True to replace it)")
    root.mkdir(parents=True, exist_ok=True)
    photos = _texture_photos()
    with replaced_atomically(final, overwrite=overwrite) as tmp:
        n_ann = 0
        for k in tqdm(range(n_images), desc=f"mini-SA {split}", disable=not progress, unit="img"):
            rng = np.random.default_rng([seed, k, 0x5A])
            n_obj = int(rng.integers(min_objects, max_objects + 1))
            image, masks = render_scene(rng, hw, n_obj, photos, noise_std, blur_sigma)
            n_ann += _write_image(tmp, k, image, masks)
    _update_manifest(root, split, {"seed": seed, "n_images": n_images, "n_annotations": n_ann,
                                   "height": hw[0], "width": hw[1], "min_objects": min_objects,
                                   "max_objects": max_objects, "noise_std": noise_std, "blur_sigma": blur_sigma,
                                   "image_format": "png",
                                   "generator_version": GENERATOR_VERSION})
    return final
