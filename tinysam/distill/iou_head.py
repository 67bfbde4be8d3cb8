"""Calibrate a trained model's IoU head against the ground truth (`cli.py calibrate-iou-head`).

The distillation losses train the IoU head to predict the IoU of a mask with its training target,
for the prompts the trainer samples (clicks on objects, boxes). Everything mode asks another
question: for a click anywhere on a grid, how good is this mask as an object? A head that never saw
background clicks or poor masks gives them the same scores as good ones, and SAM's filters
(predicted IoU 0.88) then keep nothing or keep junk.

This stage fixes only the head (`mask_decoder.iou_prediction_head`, a small MLP; every other weight
and so every mask stays as it was): for grid clicks on ground-truth scenes it records the head's
input (the IoU token after the two-way transformer) for each of the 4 mask outputs, with the target
"IoU of this mask with the best-matching object" (0 when it matches none), and fits the head to
these pairs (MSE, Adam, best held-out epoch kept). It reports the held-out error and the rank
correlation before and after, so a user sees whether the scores now mean something.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class IouHeadConfig:
    points_per_side: int = 16
    point_batch: int = 64
    epochs: int = 300
    lr: float = 1e-3
    holdout_fraction: float = 0.2
    seed: int = 0


@dataclass(frozen=True)
class HeadScore:
    mae: float
    spearman: float
    mean_predicted: float
    mean_target: float


@dataclass(frozen=True)
class IouHeadReport:
    pairs: int
    train_pairs: int
    holdout_pairs: int
    best_epoch: int
    before: HeadScore
    after: HeadScore
    seconds: float
    config: IouHeadConfig

    def to_json(self) -> dict:
        return asdict(self)


def _best_object_iou(masks: torch.Tensor, gts: torch.Tensor) -> torch.Tensor:
    """masks [P, M, H, W] bool, gts [G, H, W] bool -> [P, M]: IoU with the best-matching object."""
    if gts.shape[0] == 0:
        return torch.zeros(masks.shape[:2])
    m = masks.flatten(2).float()  # [P, M, HW]
    g = gts.flatten(1).float()  # [G, HW]
    inter = torch.einsum("pmx,gx->pmg", m, g)
    union = m.sum(-1, keepdim=True) + g.sum(-1)[None, None] - inter
    return (inter / union.clamp(min=1)).max(dim=-1).values


@torch.no_grad()
def collect_pairs(model: torch.nn.Module, scenes: Sequence[tuple[np.ndarray, list[np.ndarray]]],
                  cfg: IouHeadConfig, progress: Callable[[int, int], None] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(IoU-head inputs [N, C], targets [N, 4]) for grid clicks on `scenes` of (RGB image, object masks)."""
    from tinysam.predictor import SamPredictor, assemble_prompts
    from tinysam.utils.amg import build_point_grid

    head = model.mask_decoder.iou_prediction_head
    captured: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0].detach().float().cpu()))
    predictor = SamPredictor(model)
    feats, targets = [], []
    try:
        for n, (image, objects) in enumerate(scenes):
            predictor.set_image(image)
            h, w = image.shape[:2]
            points = build_point_grid(cfg.points_per_side) * np.array([[w, h]])
            gts = torch.as_tensor(np.stack(objects) if objects else np.zeros((0, h, w), bool), dtype=torch.bool)
            coords = predictor.transform.apply_coords(points, (h, w))
            for i in range(0, len(coords), cfg.point_batch):
                pts = torch.as_tensor(coords[i:i + cfg.point_batch], dtype=torch.float)[:, None, :]
                pts, labels = assemble_prompts(pts, torch.ones(pts.shape[:2], dtype=torch.int64), None,
                                               predictor.family, predictor.config.max_points, pts.shape[0])
                captured.clear()
                low, _ = model.decode_prompts(predictor.features, pts.to(predictor.device), labels.to(predictor.device))
                masks = model.postprocess_masks(low, predictor.input_size, predictor.original_size) > model.mask_threshold
                feats.append(captured[-1])
                targets.append(_best_object_iou(masks.cpu(), gts))
            if progress is not None:
                progress(n + 1, len(scenes))
    finally:
        hook.remove()
    return torch.cat(feats), torch.cat(targets)


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = a.flatten().argsort().argsort().float()
    rb = b.flatten().argsort().argsort().float()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float((ra.norm() * rb.norm()).clamp(min=1e-12))
    return float((ra * rb).sum()) / den


def _score(head: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> HeadScore:
    with torch.no_grad():
        p = head(x)
    return HeadScore(mae=round(float((p - y).abs().mean()), 4), spearman=round(_spearman(p, y), 4),
                     mean_predicted=round(float(p.mean()), 4), mean_target=round(float(y.mean()), 4))


def calibrate_iou_head(model: torch.nn.Module, scenes: Sequence[tuple[np.ndarray, list[np.ndarray]]],
                       cfg: IouHeadConfig = IouHeadConfig(),
                       progress: Callable[[int, int], None] | None = None) -> IouHeadReport:
    """Refit `model.mask_decoder.iou_prediction_head` in place on `scenes`; returns the report."""
    if not scenes:
        raise ValueError("IoU head calibration needs at least one scene with object masks")
    if not 0.0 < cfg.holdout_fraction < 1.0:
        raise ValueError(f"holdout fraction must be in (0, 1), got {cfg.holdout_fraction}")
    start = time.perf_counter()
    x, y = collect_pairs(model, scenes, cfg, progress)
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(x.shape[0], generator=gen)
    n_hold = max(1, int(round(cfg.holdout_fraction * x.shape[0])))
    hold, train = order[:n_hold], order[n_hold:]
    if train.numel() == 0:
        raise ValueError("too few clicks to calibrate the IoU head: use more scenes or a denser grid")
    head = model.mask_decoder.iou_prediction_head
    before = _score(head, x[hold], y[hold])
    work = copy.deepcopy(head).float().train()
    opt = torch.optim.Adam(work.parameters(), lr=cfg.lr)
    best_state, best_loss, best_epoch = copy.deepcopy(head.state_dict()), float("inf"), 0
    with torch.no_grad():
        best_loss = float(((head(x[hold]) - y[hold]) ** 2).mean())
    for epoch in range(1, cfg.epochs + 1):
        opt.zero_grad()
        loss = ((work(x[train]) - y[train]) ** 2).mean()
        loss.backward()
        opt.step()
        with torch.no_grad():
            held = float(((work(x[hold]) - y[hold]) ** 2).mean())
        if held < best_loss:
            best_loss, best_epoch, best_state = held, epoch, copy.deepcopy(work.state_dict())
    head.load_state_dict(best_state)
    after = _score(head, x[hold], y[hold])
    return IouHeadReport(pairs=int(x.shape[0]), train_pairs=int(train.numel()), holdout_pairs=n_hold,
                         best_epoch=best_epoch, before=before, after=after,
                         seconds=round(time.perf_counter() - start, 1), config=cfg)


def read_scenes(data_dir: str, limit: int) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """(RGB image, object masks) of the first `limit` scenes of an SA-1B-format directory."""
    from calibration_data.loaders import load_image
    from tinysam.distill.data import list_records, read_annotations

    records = list_records(data_dir)[:limit]  # raises on a folder without scenes
    return [(load_image(r.image_path), [a.mask() for a in read_annotations(r)[1]]) for r in records]


def save_calibrated(model: torch.nn.Module, path) -> None:  # noqa: ANN001
    """The whole model's weights, as the distiller writes a student (atomic fp32 safetensors)."""
    from tinysam.distill.resume_state import save_student

    save_student(path, model)
