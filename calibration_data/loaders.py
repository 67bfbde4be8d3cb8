"""Image loading for calibration, evaluation and the demo.

`load_image` turns an image file of one of the `IMAGE_FORMATS` (PNG, JPEG (and its MPO variant), BMP, GIF, TIFF,
WebP, PPM/PGM) into an RGB uint8 HxWx3 array. Only these decoders are ever asked: other formats
(PostScript/EPS, which Pillow hands to Ghostscript, and the rest) are refused without being parsed.

- EXIF orientation is applied (`ImageOps.exif_transpose`), so the array is upright as viewers show it.
- Grayscale (L, 1, I, F, I;16) becomes three equal channels; 16-bit and 32-bit data are scaled to 8 bits
  by their format range (I;16: value >> 8; I/F: clipped to 0..255 if already in range, else min-max).
- Alpha (RGBA, LA, PA, palette with transparency) is composited over WHITE, so transparent areas are white.
- Palette (P) and CMYK/YCbCr/LAB images are converted with Pillow.
- Images with more than `MAX_PIXELS` pixels are refused from the header, before any pixel is decoded.
- Missing, corrupt, truncated, non-image or unsupported files raise `ImageLoadError` (a ValueError) with a
  one-line message naming the file.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 50_000_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# Pillow decoders that may open untrusted files (by content, whatever the suffix); JPEG also opens
# the multi-picture JPEGs (MPO) that phones write.
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")


def open_image(path: str | Path) -> Image.Image:
    """`Image.open` restricted to `IMAGE_FORMATS` (lazy: reads the header only)."""
    return Image.open(path, formats=IMAGE_FORMATS)


class ImageLoadError(ValueError):
    """An image file could not be loaded (missing, corrupt, unsupported or too large)."""


def _check_pixels(path: Path, size: tuple[int, int]) -> None:
    w, h = size
    if w < 1 or h < 1:
        raise ImageLoadError(f"cannot load image {path}: empty image ({w}x{h})")
    if w * h > MAX_PIXELS:
        raise ImageLoadError(f"refusing image {path}: {w}x{h} = {w * h} pixels exceeds MAX_PIXELS={MAX_PIXELS}")


def _to_uint8_gray(im: Image.Image) -> np.ndarray:
    """Single-channel high bit-depth image (I;16*, I, F) -> uint8 HxW."""
    a = np.asarray(im)
    if im.mode.startswith("I;16"):
        return (a.astype(np.uint32) >> 8).astype(np.uint8)
    a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(a.min()), float(a.max())
    if im.mode == "I" and hi > 255:
        a = a / 257.0 if hi <= 65535 and lo >= 0 else (a - lo) / max(hi - lo, 1e-12) * 255.0
    elif lo < 0 or hi > 255:
        a = (a - lo) / max(hi - lo, 1e-12) * 255.0
    elif im.mode == "F" and hi <= 1.0:
        a = a * 255.0
    return np.clip(np.round(a), 0, 255).astype(np.uint8)


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Decoded Pillow image of any mode -> RGB uint8 HxWx3 (alpha composited over white)."""
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("PA", "P"):
        im = im.convert("RGBA" if im.mode == "PA" else "RGB")
    if im.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba).convert("RGB")
    if im.mode.startswith("I") or im.mode == "F":
        gray = _to_uint8_gray(im)
        return np.repeat(gray[..., None], 3, axis=2)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8)


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as an upright RGB uint8 array of shape (H, W, 3); see the module doc for rules.

    Raises ImageLoadError (a ValueError) naming the file if it is missing, not an image, corrupt,
    unsupported or larger than MAX_PIXELS.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageLoadError(f"image not found: {path}")
    try:
        with open_image(path) as im:
            _check_pixels(path, im.size)  # header only: nothing decoded yet
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                im.load()
                im = ImageOps.exif_transpose(im) or im
            arr = _to_rgb(im)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(f"cannot load image {path}: not a recognised image file "
                             f"(read: {', '.join(IMAGE_FORMATS)})") from None
    except (OSError, ValueError, SyntaxError, TypeError, KeyError, IndexError, EOFError,
            Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ImageLoadError(f"cannot load image {path}: {reason}") from None
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageLoadError(f"cannot load image {path}: unsupported layout {list(arr.shape)}")
    return np.ascontiguousarray(arr)


def list_images(folder: str | Path) -> list[Path]:
    """Image files (by suffix) directly inside `folder`, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"not a directory: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


class FolderImages:
    """Iterator over (path, image) for the images of a folder; bad files are warned about and skipped.

    After (or during) iteration, `skipped` holds (path, reason) for every file that could not be loaded.
    """

    def __init__(self, folder: str | Path, limit: int | None = None) -> None:
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self.folder = Path(folder)
        self.files = list_images(self.folder)
        self.limit = limit
        self.skipped: list[tuple[Path, str]] = []

    def __iter__(self) -> Iterator[tuple[Path, np.ndarray]]:
        count = 0
        for path in self.files:
            if self.limit is not None and count >= self.limit:
                return
            try:
                image = load_image(path)
            except ImageLoadError as exc:
                self.skipped.append((path, str(exc)))
                warnings.warn(f"skipping {path.name}: {exc}", stacklevel=2)
                continue
            count += 1
            yield path, image


def iter_folder(folder: str | Path, limit: int | None = None) -> FolderImages:
    """Iterate (path, RGB uint8 image) over a folder's images, skipping (and recording) unreadable files.

    Returns a `FolderImages`; read its `skipped` list of (path, reason) after iterating.
    """
    return FolderImages(folder, limit)
