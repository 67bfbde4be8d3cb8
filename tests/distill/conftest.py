"""Fixtures of the distillation tests: small SA-1B-format data sets and a teacher checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

SIZE = 128


def write_ellipses_sa1b(out: Path, n: int, seed: int, size: int = SIZE) -> Path:
    """n images of flat-coloured ellipses on noise, with their (non-overlapping) masks as COCO RLE."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = size, int(size * rng.uniform(0.75, 1.25))
        img = rng.normal(120, 25, (h, w, 3)).clip(0, 255).astype(np.uint8)
        yy, xx = np.mgrid[:h, :w]
        taken = np.zeros((h, w), dtype=bool)
        anns = []
        for j in range(int(rng.integers(3, 6))):
            cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
            ry, rx = rng.uniform(0.1, 0.25) * h, rng.uniform(0.1, 0.25) * w
            m = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1) & ~taken
            if m.sum() < 30:
                continue
            taken |= m
            img[m] = rng.integers(0, 255, 3)
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            ys, xs = np.nonzero(m)
            bbox = [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1]
            anns.append({"id": j, "segmentation": rle, "area": int(m.sum()), "bbox": bbox})
        Image.fromarray(img).save(out / f"sa_{seed}_{i}.jpg", quality=95)
        meta = {"image": {"image_id": f"{seed}_{i}", "width": w, "height": h, "file_name": f"sa_{seed}_{i}.jpg"},
                "annotations": anns}
        (out / f"sa_{seed}_{i}.json").write_text(json.dumps(meta))
    return out


@pytest.fixture(scope="session")
def sa1b_train(tmp_path_factory) -> Path:
    """Four training images."""
    return write_ellipses_sa1b(tmp_path_factory.mktemp("sa1b_train"), 4, seed=1)


@pytest.fixture(scope="session")
def sa1b_heldout(tmp_path_factory) -> Path:
    """Two held-out images (different seed)."""
    return write_ellipses_sa1b(tmp_path_factory.mktemp("sa1b_heldout"), 2, seed=2)


@pytest.fixture(scope="session")
def teacher_ckpt(tmp_path_factory) -> Path:
    """A randomly initialized mobilesam at 128, saved as a safetensors checkpoint."""
    from safetensors.torch import save_file

    from tinysam import build_sam

    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    state = build_sam("mobilesam", image_size=SIZE, seed=3).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


@pytest.fixture()
def one_thread():
    """One intra-op thread, for tests whose outcome depends on the float summation order: Adam's first step
    moves a weight by about lr whatever its gradient's size (a near-zero gradient whose sign flips with a
    2-thread order moves the weights 2 lr apart), and a 64 px model trained from scratch on four images
    ends elsewhere when its sums are ordered otherwise."""
    from tests.torch_threads import torch_threads

    with torch_threads(1):
        yield
