"""Prompt sampling for training, including TinySAM's hard prompt sampling.

Each GT mask gets one prompt: with probability ``box_fraction`` a noisy GT box, otherwise points.
Points: P0 uniform inside the GT mask; then, with hard prompt sampling, a number of refinement
rounds drawn uniformly from 0..``max_refine_rounds``; each round runs the model on the current
points (no grad) and adds a positive point drawn uniformly from ``GT - prediction`` (the region the
GT covers and the prediction misses). The paper does not say whose prediction drives the rounds;
we use the STUDENT's current prediction, so the points go where the student fails now. A round
whose difference set is empty adds no point.

Prompts are fixed-shape slot tensors in the model input frame: points (label 1), then ONE padding
point (label -1, SAM's ``pad=True``), then empty slots (label -2, removed from attention); a box is
two corners (labels 2, 3) then empty slots. So every step has the same shape.

Batches: the prompts of B images are one flat batch of P prompts with ``image_of`` [P] naming each
prompt's image; every random draw of an image comes from that image's own generator, in prompt
order, so an image gets the same prompts alone or in any batch. The refinement rounds of all images
run as one batched model call per round. Padding prompts (``pad_prompts``) have only empty slots.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Predict = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
BatchPredict = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Prompts:
    """A batch of K prompts as decoder inputs plus what the losses need to know."""

    coords: torch.Tensor  # [K, N, 2] float, input frame
    labels: torch.Tensor  # [K, N] float
    is_box: torch.Tensor  # [K] bool
    n_points: torch.Tensor  # [K] long, clicks (0 for boxes)


def candidate_tokens(prompts: Prompts, always_multimask: bool) -> torch.Tensor:
    """[K, 4] bool: which mask tokens answer each prompt (SAM: 1..3 for one click, else 0)."""
    multi = (~prompts.is_box) & (prompts.n_points == 1)
    if always_multimask:
        multi = torch.ones_like(multi)
    tok = torch.arange(4, device=multi.device)[None, :]
    return torch.where(multi[:, None], tok >= 1, tok == 0)


def best_by_score(low: torch.Tensor, score: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """[K, 4E, 4E] logits of the candidate token with the highest ``score`` per prompt."""
    idx = torch.where(cand, score, torch.full_like(score, -torch.inf)).argmax(dim=1)
    return low[torch.arange(low.shape[0], device=low.device), idx]


def sample_uniform_points(region: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One pixel (x, y) uniformly from each of K bool regions [K, H, W]; (coords [K,2], found [K]).

    One ``multinomial`` draw over the K rows (no per-row host sync, so it runs where ``region`` is)."""
    k, _, w = region.shape
    if k == 0:
        return torch.zeros(0, 2, device=region.device), torch.zeros(0, dtype=torch.bool, device=region.device)
    flat = region.reshape(k, -1)
    found = flat.any(dim=1)
    weights = flat.float()
    weights[:, 0] = torch.where(found, weights[:, 0], torch.ones_like(weights[:, 0]))  # empty rows: a dummy draw
    j = torch.multinomial(weights, 1, generator=gen)[:, 0]
    coords = torch.stack([j % w, torch.div(j, w, rounding_mode="floor")], dim=1).float()
    return torch.where(found[:, None], coords, torch.zeros_like(coords)), found


def boxes_from_masks(gt: torch.Tensor) -> torch.Tensor:
    """Tight xyxy boxes [K, 4] (inclusive pixel indices) of K non-empty masks [K, H, W]."""
    rows, cols = gt.any(dim=2), gt.any(dim=1)
    ar_h = torch.arange(gt.shape[1], device=gt.device)[None].expand_as(rows)
    ar_w = torch.arange(gt.shape[2], device=gt.device)[None].expand_as(cols)
    big = 1 << 30
    y0 = torch.where(rows, ar_h, big).min(1).values
    y1 = torch.where(rows, ar_h, -1).max(1).values
    x0 = torch.where(cols, ar_w, big).min(1).values
    x1 = torch.where(cols, ar_w, -1).max(1).values
    return torch.stack([x0, y0, x1, y1], dim=1).float()


def jitter_boxes(boxes: torch.Tensor, noise: float, max_px: float, size: int, gen: torch.Generator) -> torch.Tensor:
    """SAM-style box noise: corner std = ``noise`` x side, capped at ``max_px``; clamped to the frame."""
    if noise <= 0:
        return boxes
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1.0).repeat(1, 2)
    std = (wh * noise).clamp(max=max_px)
    out = boxes + torch.randn(boxes.shape, generator=gen, device=boxes.device) * std
    return out.clamp(0, size - 1)


def to_slots(points: torch.Tensor, n_points: torch.Tensor, is_box: torch.Tensor, boxes: torch.Tensor, n_slots: int):
    """Fixed-shape (coords [K,N,2], labels [K,N]) from clicks [K,P,2] (all positive) or boxes."""
    k, p = points.shape[:2]
    dev = points.device
    slot = torch.arange(n_slots, device=dev)[None, :].expand(k, -1)
    pts = torch.zeros(k, n_slots, 2, device=dev)
    pts[:, : min(p, n_slots)] = points[:, :n_slots]
    labels = torch.where(slot < n_points[:, None], 1.0, -2.0)
    labels = torch.where(slot == n_points[:, None], -1.0, labels)
    coords = torch.where((slot < n_points[:, None])[..., None], pts, torch.zeros_like(pts))
    box_coords = torch.zeros(k, n_slots, 2, device=dev)
    box_coords[:, 0], box_coords[:, 1] = boxes[:, :2], boxes[:, 2:]
    box_labels = torch.where(slot == 0, 2.0, torch.where(slot == 1, 3.0, -2.0))
    coords = torch.where(is_box[:, None, None], box_coords, coords)
    labels = torch.where(is_box[:, None], box_labels, labels)
    return coords, labels


def n_slots_for(hard_prompts: bool, max_refine_rounds: int, max_points: int | None) -> tuple[int, int]:
    """(refinement rounds at most, point slots per prompt) of a configuration."""
    rounds_max = max_refine_rounds if hard_prompts else 0
    if max_points is not None:
        rounds_max = min(rounds_max, max_points - 2)
    return rounds_max, max(rounds_max + 2, 2)


def _image_rows(image_of: torch.Tensor, n_images: int) -> list[torch.Tensor]:
    return [(image_of == b).nonzero().flatten() for b in range(n_images)]


def sample_prompts_batch(
    gt: torch.Tensor,
    image_of: torch.Tensor,
    gens: list[torch.Generator],
    *,
    box_fraction: float,
    hard_prompts: bool,
    max_refine_rounds: int,
    box_noise: float,
    box_noise_max: float,
    predict: BatchPredict | None = None,
    always_multimask: bool = False,
    max_points: int | None = None,
) -> Prompts:
    """One prompt per GT mask [P, S, S] of several images (``image_of`` [P], rows of one image in
    order). ``predict(coords, labels, image_of)`` returns ``(low_res [P',4,4E,4E], iou [P',4])`` for a
    subset of the prompts and is called under ``torch.no_grad``, once per refinement round."""
    p, s = gt.shape[0], gt.shape[-1]
    dev = gt.device
    rounds_max, n_slots = n_slots_for(hard_prompts, max_refine_rounds, max_points)
    rows = _image_rows(image_of, len(gens))
    is_box = torch.zeros(p, dtype=torch.bool, device=dev)
    boxes = torch.zeros(p, 4, device=dev)
    points = torch.zeros(p, rounds_max + 1, 2, device=dev)
    rounds = torch.zeros(p, dtype=torch.long, device=dev)
    for idx, gen in zip(rows, gens):
        k = idx.numel()
        if k == 0:
            continue
        is_box[idx] = torch.rand(k, generator=gen, device=dev) < box_fraction
        boxes[idx] = jitter_boxes(boxes_from_masks(gt[idx]), box_noise, box_noise_max * s / 1024.0, s, gen)
        points[idx, 0] = sample_uniform_points(gt[idx], gen)[0]
        rounds[idx] = torch.randint(0, rounds_max + 1, (k,), generator=gen, device=dev)
    n_points = torch.where(is_box, 0, 1)
    rounds = torch.where(is_box, 0, rounds)
    n_rounds = int(rounds.max().item()) if p and predict is not None else 0
    for j in range(1, n_rounds + 1):
        active = (rounds >= j).nonzero().flatten()
        if active.numel() == 0:
            break
        sub = Prompts(*to_slots(points[active], n_points[active], is_box[active], boxes[active], n_slots),
                      is_box[active], n_points[active])
        with torch.no_grad():
            low, iou = predict(sub.coords, sub.labels, image_of[active])
        logits = best_by_score(low.float(), iou.float(), candidate_tokens(sub, always_multimask))
        pred = F.interpolate(logits[:, None], size=(s, s), mode="bilinear", align_corners=False)[:, 0] > 0
        missed = gt[active] & ~pred
        for b, gen in enumerate(gens):
            local = (image_of[active] == b).nonzero().flatten()
            if local.numel() == 0:
                continue
            new, found = sample_uniform_points(missed[local], gen)
            rows_b = active[local][found]
            points[rows_b, n_points[rows_b]] = new[found]
            n_points[rows_b] += 1
    coords, labels = to_slots(points, n_points, is_box, boxes, n_slots)
    return Prompts(coords, labels, is_box, n_points)


def sample_prompts(gt: torch.Tensor, gen: torch.Generator, *, predict: Predict | None = None, **kw) -> Prompts:
    """`sample_prompts_batch` for the K masks [K, S, S] of one image."""
    image_of = torch.zeros(gt.shape[0], dtype=torch.long, device=gt.device)
    batch_predict = None if predict is None else (lambda coords, labels, _image_of: predict(coords, labels))
    return sample_prompts_batch(gt, image_of, [gen], predict=batch_predict, **kw)


def pad_prompts(prompts: Prompts, valid: torch.Tensor) -> Prompts:
    """Scatter the prompts of the valid rows of a [B, K] layout into B*K rows; padding rows hold
    only empty slots (label -2), no box and no point."""
    n = valid.numel()
    dev = prompts.coords.device
    flat = valid.flatten()
    coords = torch.zeros(n, *prompts.coords.shape[1:], device=dev)
    labels = torch.full((n, prompts.labels.shape[1]), -2.0, device=dev)
    is_box = torch.zeros(n, dtype=torch.bool, device=dev)
    n_points = torch.zeros(n, dtype=prompts.n_points.dtype, device=dev)
    coords[flat], labels[flat], is_box[flat], n_points[flat] = prompts.coords, prompts.labels, prompts.is_box, prompts.n_points
    return Prompts(coords, labels, is_box, n_points)
