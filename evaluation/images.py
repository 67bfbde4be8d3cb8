"""Reading images as RGB uint8 arrays, with one-line errors for unreadable or oversized files.

Decoding rules (EXIF orientation, grayscale/16-bit/palette/CMYK conversion, alpha over white) are
those of `calibration_data.loaders.load_image`; this module adds the CLI's error type and a size
check that reads the header only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from calibration_data.loaders import IMAGE_FORMATS, MAX_PIXELS, load_image, open_image

# Larger images are refused from their header, before any pixel is decoded (the loader's limit).
MAX_IMAGE_PIXELS = MAX_PIXELS

_READ_ERRORS = (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError)


class ImageReadError(ValueError):
    """An image file is missing, cannot be decoded, or is too large."""


def _reason(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__


def check_image_size(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """(width, height) from the file header; ImageReadError if unreadable or above `max_pixels`."""
    try:
        with open_image(path) as im:  # lazy: reads the header only; only IMAGE_FORMATS are tried
            w, h = im.size
    except Image.DecompressionBombError as exc:  # Pillow's own, higher limit
        raise ImageReadError(f"image {path} is above the limit of {max_pixels / 1e6:.0f} megapixels "
                             f"({_reason(exc)})") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"cannot read image {path}: not a recognised image file "
                             f"(read: {', '.join(IMAGE_FORMATS)})") from None
    except _READ_ERRORS as exc:
        raise ImageReadError(f"cannot read image {path}: {_reason(exc)}") from None
    if w * h > max_pixels:
        raise ImageReadError(f"image {path} is {w}x{h} ({w * h / 1e6:.0f} megapixels), above the limit of "
                             f"{max_pixels / 1e6:.0f} megapixels; downscale it first")
    return w, h


def load_rgb(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """RGB uint8 HxWx3 array of an image file (EXIF orientation applied, alpha composited over white).

    Refuses images above `max_pixels` before decoding them.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image not found: {path}")
    check_image_size(path, max_pixels)
    try:
        arr = np.asarray(load_image(path))
    except _READ_ERRORS as exc:
        raise ImageReadError(_reason(exc).replace("cannot load image", "cannot read image")) from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or min(arr.shape[:2]) < 1:
        raise ImageReadError(f"cannot read image {path}: expected RGB uint8, got {arr.dtype} {list(arr.shape)}")
    return np.ascontiguousarray(arr)
