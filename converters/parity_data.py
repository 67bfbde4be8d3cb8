"""The inputs of the parity check: real photos and a fixed prompt set, prepared like the reference.

Images are the first bundled photos (default 2) or the first images of a calibration directory
(up to 4). They keep their aspect ratio: the reference predictor's own transform resizes them and
the model's `preprocess` normalizes and pads them, exactly as `tinysam.SamPredictor.set_image`.
Prompts are fixed fractions of the original image, mapped to the model input frame by the same
transform and assembled by the predictor's `assemble_prompts` (per-family padding), then written
into the package's fixed N slots (unused slots get label -2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from converters.spec import N_SLOTS, ExportSpec
from mobile_runtime.package_format import LABEL

DEFAULT_BUNDLED = 2  # bundled photos used when no calibration directory is given
MAX_CALIBRATION = 4  # images taken from a calibration directory

# Fixed prompt set in fractions of the original (W, H): (points [(x, y, label)], box (x0, y0, x1, y1) | None).
_FIXED_PROMPTS: tuple[tuple[tuple[tuple[float, float, int], ...], tuple[float, float, float, float] | None], ...] = (
    (((0.5, 0.5, 1),), None),
    (((0.3, 0.4, 1), (0.7, 0.6, 0)), None),
    ((), (0.2, 0.25, 0.75, 0.8)),
    (((0.45, 0.5, 1),), (0.3, 0.3, 0.65, 0.7)),
    (((0.25, 0.3, 1),), None),
    (((0.6, 0.35, 1), (0.4, 0.7, 1)), None),
    ((), (0.05, 0.1, 0.5, 0.55)),
    (((0.7, 0.7, 1),), (0.5, 0.45, 0.95, 0.95)),
)


class ParityDataError(ValueError):
    """The parity images are missing or unreadable."""


@dataclass
class ParityImage:
    """One prepared photo: its name, original size, input-frame size and encoder input."""

    name: str
    original_size: tuple[int, int]  # (H, W)
    input_size: tuple[int, int]  # (h, w) after resize, before padding
    x: torch.Tensor  # [1, 3, S, S] normalized and padded


def load_parity_images(calibration: str | Path | None = None) -> list[tuple[str, np.ndarray]]:
    """(name, RGB uint8 image) pairs: the first 2 bundled photos, or the first <= 4 of `calibration`.

    Raises ParityDataError when the photos are missing or a calibration image cannot be read.
    """
    from calibration_data.loaders import ImageLoadError, list_images, load_image

    try:
        if calibration is None:
            from calibration_data import bundled_images

            paths = list(bundled_images())[:DEFAULT_BUNDLED]
            if len(paths) < DEFAULT_BUNDLED:
                raise ParityDataError(f"parity needs {DEFAULT_BUNDLED} bundled photos, found {len(paths)}")
        else:
            paths = list_images(calibration)[:MAX_CALIBRATION]
            if not paths:
                raise ParityDataError(f"calibration directory {calibration} holds no images")
        return [(p.name, load_image(p)) for p in paths]
    except (FileNotFoundError, ImageLoadError) as exc:
        raise ParityDataError(f"parity images unavailable: {str(exc).splitlines()[0]}") from None


def prepare_image(model: torch.nn.Module, name: str, image: np.ndarray) -> ParityImage:
    """Resize / normalize / pad `image` with the reference predictor's transform and the model."""
    from tinysam.predictor import SamPredictor

    transform = SamPredictor(model).transform
    resized = transform.apply_image_tensor(np.array(image))  # a writable copy
    with torch.no_grad():
        x = model.preprocess(resized)
    return ParityImage(name, (int(image.shape[0]), int(image.shape[1])),
                       (int(resized.shape[-2]), int(resized.shape[-1])), x)


def _one_prompt(model: torch.nn.Module, index: int, original_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Prompt `index` of the fixed set as (coords [N_SLOTS, 2], labels [N_SLOTS]) in the input frame."""
    from tinysam.predictor import SamPredictor, assemble_prompts

    cfg = model.config
    transform = SamPredictor(model).transform
    h, w = original_size
    points, box = _FIXED_PROMPTS[index % len(_FIXED_PROMPTS)]
    if cfg.family != "sam":  # EfficientSAM takes positive points only
        points = tuple(p for p in points if p[2] == 1)
    pc = pl = bx = None
    if points:
        xy = np.array([[p[0] * w, p[1] * h] for p in points])
        pc = torch.tensor(transform.apply_coords(xy, original_size)[None], dtype=torch.float32)
        pl = torch.tensor([[p[2] for p in points]])
    if box is not None:
        b = np.array([[box[0] * w, box[1] * h, box[2] * w, box[3] * h]])
        bx = torch.tensor(transform.apply_boxes(b, original_size), dtype=torch.float32)
    coords, labels = assemble_prompts(pc, pl, bx, cfg.family, cfg.max_points)
    n = coords.shape[1]
    if n > N_SLOTS:
        raise ValueError(f"fixed parity prompt {index} needs {n} slots, the package has {N_SLOTS}")
    out_c = np.zeros((N_SLOTS, 2), np.float32)
    out_l = np.full((N_SLOTS,), float(LABEL.EMPTY_SLOT), np.float32)
    out_c[:n], out_l[:n] = coords[0].numpy(), labels[0].numpy()
    return out_c, out_l


def parity_prompts(model: torch.nn.Module, spec: ExportSpec, k: int, original_size: tuple[int, int],
                   offset: int = 0) -> dict[str, np.ndarray]:
    """K prompts of the fixed set (starting at `offset`) as the decoder's feeds for this spec.

    Every third prompt also carries a previous low-res mask when the model accepts mask input.
    """
    rows = [_one_prompt(model, offset + i, original_size) for i in range(k)]
    feeds = {"point_coords": np.stack([r[0] for r in rows]), "point_labels": np.stack([r[1] for r in rows])}
    names = [t.name for t in spec.decoder_inputs(k)]
    if "mask_input" in names:
        lr = spec.low_res_size
        yy, xx = np.mgrid[0:lr, 0:lr] / lr
        mask = np.stack([8 * np.sin(3 * xx + i) * np.cos(2 * yy) for i in range(k)])[:, None].astype(np.float32)
        has = ((np.arange(k) + offset) % 3 == 2).astype(np.float32)
        feeds["mask_input"] = mask * has[:, None, None, None]
        feeds["has_mask_input"] = has
    return feeds


_FITS_FAST = (0, 2, 4, 6)  # fixed prompts of one point or one box (FAST_SLOTS slots)


def fast_parity_prompts(model: torch.nn.Module, k: int, original_size: tuple[int, int],
                        offset: int = 0) -> dict[str, np.ndarray]:
    """K prompts for the split decoder, in N_SLOTS slots (the reference's form; the split decoder takes the
    first FAST_SLOTS): the fixed one-point and box prompts, alternating with single points spread over the
    image as everything mode places them."""
    from tinysam.predictor import SamPredictor

    transform = SamPredictor(model).transform
    h, w = original_size
    coords = np.zeros((k, N_SLOTS, 2), np.float32)
    labels = np.full((k, N_SLOTS), float(LABEL.EMPTY_SLOT), np.float32)
    for i in range(k):
        j = offset + i
        if j % 2 == 0:
            coords[i], labels[i] = _one_prompt(model, _FITS_FAST[(j // 2) % len(_FITS_FAST)], original_size)
            continue
        xy = np.array([[((j * 0.618) % 1) * w, ((j * 0.382 + 0.1) % 1) * h]])
        coords[i, 0] = transform.apply_coords(xy, original_size)[0]
        labels[i, :2] = (float(LABEL.POS), float(LABEL.PAD))
    return {"point_coords": coords, "point_labels": labels}
