"""The ``warmup`` stage's targets: random rectangles and ellipses in place of the ground truth.

A randomly initialized SAM mask decoder on an image encoder without absolute position embeddings
(TinyViT) learns a generic "object" mask and ignores where the prompt is (docs/training.md). For a
box around a filled rectangle, or a click inside an ellipse, the right mask is the shape itself, so
the warm-up teaches the prompt encoder and mask decoder to put the mask where the prompt is before
they see real objects.
"""

from __future__ import annotations

import numpy as np
import torch


def random_shapes(n: int, input_size: tuple[int, int], frame: int, rng: np.random.Generator) -> torch.Tensor:
    """``n`` bool masks [n, frame, frame]: half rectangles, half ellipses, each inside the
    ``input_size`` (h, w) image area, sides between 1/8 and 1/2 of the image's longer side."""
    h, w = input_size
    yy, xx = np.mgrid[0:frame, 0:frame].astype(np.float32) + 0.5
    side = max(h, w)
    out = np.zeros((n, frame, frame), dtype=bool)
    for i in range(n):
        bh = min(rng.uniform(side / 8, side / 2), h)
        bw = min(rng.uniform(side / 8, side / 2), w)
        y0, x0 = rng.uniform(0, h - bh), rng.uniform(0, w - bw)
        if rng.random() < 0.5:
            out[i] = (xx >= x0) & (xx < x0 + bw) & (yy >= y0) & (yy < y0 + bh)
        else:
            cy, cx = y0 + bh / 2, x0 + bw / 2
            out[i] = ((xx - cx) / (bw / 2)) ** 2 + ((yy - cy) / (bh / 2)) ** 2 <= 1.0
    return torch.from_numpy(out)
