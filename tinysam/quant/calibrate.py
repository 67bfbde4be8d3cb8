"""Calibration data: images through the predictor path with a fixed prompt set.

Each calibration sample is one image resized/normalized/padded exactly as `SamPredictor.set_image`
does, plus a fixed prompt set in the model input frame: a 3x3 grid of single positive clicks (each
with SAM's padding point) and four boxes. `run_model` is the path the predictor takes:
`encode_image` then `decode_prompts`, all four mask tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..utils.transforms import transform_for_config

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class CalibSample:
    """One calibration image and its prompts (model input frame)."""

    image: torch.Tensor  # [1, 3, S, S], normalized and padded
    coords: torch.Tensor  # [K, 2, 2]
    labels: torch.Tensor  # [K, 2] float
    input_size: tuple[int, int]


def synthetic_images(n: int, size: int = 96, seed: int = 0) -> list[np.ndarray]:
    """Deterministic RGB uint8 scenes (textured background, filled ellipses and rectangles)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = []
    for _ in range(n):
        base = rng.uniform(40, 200, 3)
        img = base + 25 * np.sin(xx[..., None] / rng.uniform(3, 12) + rng.uniform(0, 6, 3))
        for _ in range(int(rng.integers(2, 5))):
            cy, cx = rng.uniform(0.15, 0.85, 2) * size
            ry, rx = rng.uniform(0.08, 0.3, 2) * size
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
            img[inside] = rng.uniform(0, 255, 3)
        x0, y0 = rng.integers(0, size // 2, 2)
        img[y0 : y0 + size // 4, x0 : x0 + size // 3] = rng.uniform(0, 255, 3)
        out.append(np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8))
    return out


def _load_dir(path: Path, n: int) -> list[np.ndarray]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in calibration directory {path}")
    from calibration_data.loaders import load_image  # only the documented formats are opened

    return [load_image(f) for f in files[:n]]


def load_calibration_images(source: str | Path | None, n: int) -> list[np.ndarray]:
    """`n` RGB uint8 images from a directory, or the project's bundled calibration photos (None)."""
    if n < 1:
        raise ValueError(f"number of calibration images must be >= 1, got {n}")
    try:  # the submodule, not the package attribute: a same-named test folder can shadow the package
        from calibration_data.sources import calibration_images
    except ImportError:
        calibration_images = None
    if calibration_images is not None:
        return list(calibration_images(source, n))[:n]
    if source is None:
        raise ValueError("no calibration directory given and calibration_data has no bundled images")
    path = Path(source)
    if not path.is_dir():
        raise ValueError(f"calibration source {source} is not a directory")
    return _load_dir(path, n)


def prompt_set(input_size: tuple[int, int], grid: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed prompts: `grid`x`grid` positive clicks (+ padding point) and 4 boxes -> coords, labels."""
    h, w = input_size
    coords, labels = [], []
    for fy in (np.arange(grid) + 0.5) / grid:
        for fx in (np.arange(grid) + 0.5) / grid:
            coords.append([[fx * w, fy * h], [0.0, 0.0]])
            labels.append([1.0, -1.0])
    for x0, y0, x1, y1 in ((0.1, 0.1, 0.5, 0.5), (0.5, 0.5, 0.9, 0.9), (0.2, 0.4, 0.8, 0.7), (0.05, 0.05, 0.95, 0.95)):
        coords.append([[x0 * w, y0 * h], [x1 * w, y1 * h]])
        labels.append([2.0, 3.0])
    return torch.tensor(coords, dtype=torch.float32), torch.tensor(labels, dtype=torch.float32)


def make_samples(model: torch.nn.Module, images: list[np.ndarray], grid: int = 3) -> list[CalibSample]:
    """Preprocess images as the predictor does and attach the fixed prompt set."""
    transform = transform_for_config(model.config)
    samples = []
    for img in images:
        resized = transform.apply_image_tensor(img)
        input_size = (int(resized.shape[-2]), int(resized.shape[-1]))
        with torch.no_grad():
            x = model.preprocess(resized)
        coords, labels = prompt_set(input_size, grid)
        samples.append(CalibSample(x, coords, labels, input_size))
    return samples


def run_model(model: torch.nn.Module, sample: CalibSample) -> tuple[torch.Tensor, torch.Tensor]:
    """The predictor path: encoder once, then all prompts -> (low_res [K,4,4E,4E], iou [K,4])."""
    emb = model.encode_image(sample.image)
    return model.decode_prompts(emb, sample.coords, sample.labels)


def fisher_loss(low_res: torch.Tensor, iou: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Task loss with targets sampled from the model's own outputs (Fisher / Gauss-Newton form).

    Mask term: per-pixel Bernoulli targets y ~ sigmoid(z), BCE averaged over pixels and summed over
    masks; IoU term: a token index c ~ softmax(iou), cross-entropy summed over prompts. At the float
    model the expected squared gradient of this loss w.r.t. any activation equals the diagonal of
    the Gauss-Newton Hessian of L = KL(mask) + KL(iou) there (both KLs vanish with zero gradient).
    """
    z = low_res.float()
    with torch.no_grad():
        y = torch.bernoulli(torch.sigmoid(z), generator=gen)
        c = torch.multinomial(torch.softmax(iou.float(), dim=-1), 1, generator=gen).squeeze(-1)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none").mean(dim=(-2, -1)).sum()
    ce = torch.nn.functional.cross_entropy(iou.float(), c, reduction="sum")
    return bce + ce
