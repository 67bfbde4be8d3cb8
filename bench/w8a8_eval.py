"""Held-out accuracy of a W8A8 model against the float model: encoder relative error and 1-click agreement.

The measure of `bench/w8a8_errors.py`: held-out mini-SA at the trained size (`bench.accuracy.load_eval_set`),
each ground-truth instance prompted by its first simulated click (`evaluation.metrics.next_click`, as the
accuracy suite's `agreement_1pt`), the best of the multimask outputs by predicted IoU.

- `rel_error`: mean over images of ||e - e_float|| / ||e_float||, e the image embedding.
- `agreement_1pt`: mean over instances of IoU(mask, float mask).
- `worst_agreement`: the lowest instance IoU (one broken mask shows here before it moves the mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class HeldOut:
    """Held-out images, the first click of each instance, and the float model's answers on them."""

    images: list[np.ndarray]
    clicks: list[list[tuple[float, float, int]]]  # per image: (x, y, label) per instance
    description: str
    embeddings: list[np.ndarray] | None = None
    masks: list[list[np.ndarray]] | None = None


def load_held_out(n_images: int, image_size: int) -> HeldOut:
    """The accuracy suite's held-out set at `image_size` with each instance's first click."""
    from bench.accuracy import load_eval_set
    from evaluation.metrics import next_click

    samples, description = load_eval_set(n_images, image_size)
    images, clicks = [], []
    for rgb, masks in samples:
        cs = [next_click(gt, None, allow_negative=True) for gt in masks]
        images.append(rgb)
        clicks.append([(float(c.x), float(c.y), int(c.label)) for c in cs])
    return HeldOut(images, clicks, description)


def predictor_answers(predictor, held: HeldOut) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:  # noqa: ANN001
    """(embedding per image, best 1-click mask per instance) of a predictor with `set_image`/`predict`
    and `get_image_embedding` (the torch `SamPredictor` or a `mobile_runtime` session)."""
    from evaluation.adapter import PromptPredictor

    wrapped = PromptPredictor(predictor)
    embs, masks = [], []
    for rgb, cs in zip(held.images, held.clicks):
        wrapped.set_image(rgb)
        e = predictor.get_image_embedding()
        embs.append(np.asarray(e.detach().numpy() if hasattr(e, "detach") else e, np.float64).copy())
        per = []
        for x, y, label in cs:
            m, _ = wrapped.predict_best(np.array([[x, y]], np.float64), np.array([label]), multimask_output=True)
            per.append(m)
        masks.append(per)
    return embs, masks


def torch_answers(model, held: HeldOut) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:  # noqa: ANN001
    """`predictor_answers` of a torch model (float or fake-quant) through `SamPredictor`."""
    import torch

    from tinysam.predictor import SamPredictor

    with torch.inference_mode():
        return predictor_answers(SamPredictor(model), held)


def set_reference(held: HeldOut, model) -> HeldOut:  # noqa: ANN001
    """Store the float model's answers in `held` (the reference of `compare`)."""
    held.embeddings, held.masks = torch_answers(model, held)
    return held


def compare(held: HeldOut, embs: list[np.ndarray], masks: list[list[np.ndarray]]) -> dict:
    """rel_error, agreement_1pt, worst_agreement of answers against `held`'s float reference."""
    from evaluation.metrics import mask_iou

    if held.embeddings is None or held.masks is None:
        raise ValueError("held-out set has no float reference: call set_reference first")
    rel = [float(np.linalg.norm(e - r) / np.linalg.norm(r)) for e, r in zip(embs, held.embeddings)]
    ious = [float(mask_iou(a, b)) for ms, rs in zip(masks, held.masks) for a, b in zip(ms, rs)]
    return {"rel_error": float(np.mean(rel)), "agreement_1pt": float(np.mean(ious)),
            "worst_agreement": float(np.min(ious))}


def measure_torch(model, held: HeldOut) -> dict:  # noqa: ANN001
    """`compare` for a torch model."""
    return compare(held, *torch_answers(model, held))
