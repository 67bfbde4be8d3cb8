"""Run-length encodings of binary masks in numpy (SAM's uncompressed RLE and COCO's compressed string).

Uncompressed RLE: {"size": [h, w], "counts": [...]} over the mask in column-major (Fortran) order,
starting with a run of zeros (possibly 0). The COCO string form is the same counts written with
pycocotools' LEB128-like character encoding, so pycocotools decodes it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """Uncompressed RLE of one HxW boolean mask."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    h, w = mask.shape
    flat = mask.T.reshape(-1)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [h * w]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    if flat.size == 0:
        counts = []
    return {"size": [h, w], "counts": counts}


def window_to_rle(window: np.ndarray, y0: int, x0: int, size: tuple[int, int]) -> dict[str, Any]:
    """RLE of a full HxW mask that is zero outside `window` placed at (y0, x0)."""
    h, w = size
    full = np.zeros((h, w), dtype=bool)
    full[y0 : y0 + window.shape[0], x0 : x0 + window.shape[1]] = window
    return mask_to_rle(full)


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Decode an uncompressed RLE to an HxW boolean mask."""
    h, w = rle["size"]
    counts = np.asarray(rle["counts"], dtype=np.int64)
    if counts.sum() != h * w:
        raise ValueError(f"RLE counts sum to {int(counts.sum())}, expected {h * w}")
    values = (np.arange(len(counts)) % 2).astype(bool)
    flat = np.repeat(values, counts)
    return flat.reshape(w, h).T.copy()


def area_from_rle(rle: dict[str, Any]) -> int:
    """Number of foreground pixels."""
    return int(sum(rle["counts"][1::2]))


def counts_to_string(counts: list[int]) -> str:
    """pycocotools `rleToString`: differential LEB128-style encoding, 5 bits per char, offset 48."""
    out = []
    for i, c in enumerate(counts):
        x = int(c)
        if i > 2:
            x -= int(counts[i - 2])
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = (x != -1) if (ch & 0x10) else (x != 0)
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)


def string_to_counts(s: str) -> list[int]:
    """Inverse of `counts_to_string` (pycocotools `rleFrString`), strict: every character must be one
    of the encoding's 64 ('0'..'o'), a count may span at most 13 characters (64 bits) and the string
    must not end inside a count; anything else is a ValueError, never a huge or negative-width loop."""
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s):
                raise ValueError("compressed RLE ends inside a count")
            ch = ord(s[p]) - 48
            if not 0 <= ch < 64:
                raise ValueError(f"compressed RLE has a character outside '0'..'o': {s[p]!r}")
            if k == _MAX_COUNT_CHARS:
                raise ValueError(f"compressed RLE has a count longer than {_MAX_COUNT_CHARS} characters")
            x |= (ch & 0x1F) << (5 * k)
            more = bool(ch & 0x20)
            p += 1
            k += 1
            if not more and (ch & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


_MAX_COUNT_CHARS = 13


def coco_encode_rle(rle: dict[str, Any]) -> dict[str, Any]:
    """Uncompressed RLE -> COCO compressed RLE {"size": [h, w], "counts": str} (JSON-ready)."""
    return {"size": list(rle["size"]), "counts": counts_to_string(rle["counts"])}
