"""One forward pass of the ``kd`` (distillation) and ``gt`` (ground truth only) stages: one image
(`image_step`) or a batch of B images (`batch_step`, prompts padded with empty-slot rows)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import TrainConfig
from .data import Sample
from .losses import DecodeOut, batch_losses, compute_losses
from .prompts import candidate_tokens, pad_prompts, sample_prompts, sample_prompts_batch
from .teacher_cache import TeacherCache


def decode(model: nn.Module, emb: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor, tokens: bool) -> DecodeOut:
    """``model.decode_prompts`` with all four tokens and, if ``tokens``, the transformer's output
    queries [K, 5 + N, C] (``decode_prompts(..., return_tokens=True)``)."""
    if not tokens:
        low, iou = model.decode_prompts(emb, coords, labels)
        return DecodeOut(low, iou)
    low, iou, toks = model.decode_prompts(emb, coords, labels, return_tokens=True)
    return DecodeOut(low, iou, toks)


def low_res_targets(gt: torch.Tensor) -> torch.Tensor:
    """[K, S, S] bool input-frame masks -> [K, S/4, S/4] float {0,1} (area average >= 0.5)."""
    return (F.interpolate(gt[:, None].float(), scale_factor=0.25, mode="area")[:, 0] >= 0.5).float()


def batch_step(
    cfg: TrainConfig,
    student: nn.Module,
    x: torch.Tensor,
    gt: torch.Tensor,
    valid: torch.Tensor,
    gens: list[torch.Generator],
    autocast,
    teacher: nn.Module | None = None,
    emb_t: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Forward B images with their prompts; returns the loss parts per image ([B] each, ``total`` has
    grad) plus ``image_valid`` [B] (images with at least one mask).

    ``x`` [B, 3, S, S] normalized; ``gt`` [B, K, S, S] bool with ``valid`` [B, K] marking real masks;
    ``gens[b]`` draws image b's prompts; ``autocast()`` wraps every forward pass; ``emb_t`` [B, ...] the
    teacher embeddings (``kd`` stage; computed here when None and a teacher is given).
    """
    b, k = valid.shape
    with autocast():
        emb_s = student.encode_image(x)
    emb_detached = emb_s.detach()
    always_multi = bool(student.config.always_multimask)
    flat_valid = valid.flatten()
    image_all = torch.arange(b, device=x.device).repeat_interleave(k)

    def predict(coords: torch.Tensor, labels: torch.Tensor, image_of: torch.Tensor):
        with autocast():
            return student.decode_prompts(emb_detached[image_of], coords, labels)

    gt_flat = gt.flatten(0, 1)
    prompts = sample_prompts_batch(
        gt_flat[flat_valid],
        image_all[flat_valid],
        gens,
        predict=predict if cfg.hard_prompts else None,
        **sampling_options(cfg, student),
    )
    prompts = pad_prompts(prompts, valid)
    cand = candidate_tokens(prompts, always_multi)
    use_teacher = cfg.stage == "kd" and teacher is not None
    want_tokens = use_teacher and cfg.use_token_loss
    with autocast():
        out_s = decode(student, emb_s[image_all], prompts.coords, prompts.labels, want_tokens)
    out_t = None
    if use_teacher:
        with torch.no_grad(), autocast():
            if emb_t is None:
                emb_t = teacher.encode_image(x).float()
            out_t = decode(teacher, emb_t[image_all], prompts.coords, prompts.labels, want_tokens)
    n_out = 1 + out_s.low_res.shape[1]
    token_valid = torch.cat([torch.ones(b * k, n_out, dtype=torch.bool, device=x.device), prompts.labels != -2], dim=1)
    parts = batch_losses(cfg, out_s, low_res_targets(gt_flat), cand, valid, teacher=out_t,
                         emb_student=emb_s if use_teacher else None, emb_teacher=emb_t, token_valid=token_valid)
    parts["image_valid"] = valid.any(dim=1)
    return parts


def sampling_options(cfg: TrainConfig, student: nn.Module) -> dict:
    """The prompt-sampling settings both step functions pass (hard prompts, boxes, refinement rounds)."""
    return {"box_fraction": cfg.box_fraction, "hard_prompts": cfg.hard_prompts,
            "max_refine_rounds": cfg.max_refine_rounds, "box_noise": cfg.box_noise,
            "box_noise_max": cfg.box_noise_max, "always_multimask": bool(student.config.always_multimask),
            "max_points": student.config.max_points}


def image_step(
    cfg: TrainConfig,
    student: nn.Module,
    sample: Sample,
    gen: torch.Generator,
    teacher: nn.Module | None = None,
    cache: TeacherCache | None = None,
) -> dict[str, torch.Tensor] | None:
    """Forward one image with its K prompts and return the loss parts (``total`` has grad).

    Returns None when the image has no usable mask.
    """
    if sample.gt.shape[0] == 0:
        return None
    x = student.preprocess(sample.image)
    emb_s = student.encode_image(x)
    emb_detached = emb_s.detach()
    always_multi = bool(student.config.always_multimask)

    def predict(coords: torch.Tensor, labels: torch.Tensor):
        return student.decode_prompts(emb_detached, coords, labels)

    prompts = sample_prompts(
        sample.gt,
        gen,
        predict=predict if cfg.hard_prompts else None,
        **sampling_options(cfg, student),
    )
    cand = candidate_tokens(prompts, always_multi)
    use_teacher = cfg.stage == "kd" and teacher is not None
    want_tokens = use_teacher and cfg.use_token_loss
    out_s = decode(student, emb_s, prompts.coords, prompts.labels, want_tokens)
    out_t = emb_t = None
    if use_teacher:
        if cache is None:
            raise ValueError("the kd stage needs a teacher embedding cache")
        emb_t = cache.get(sample.image_id)
        with torch.no_grad():
            out_t = decode(teacher, emb_t, prompts.coords, prompts.labels, want_tokens)
    k = prompts.labels.shape[0]
    n_out = 1 + out_s.low_res.shape[1]
    token_valid = torch.cat([torch.ones(k, n_out, dtype=torch.bool), prompts.labels != -2], dim=1)
    return compute_losses(
        cfg,
        out_s,
        low_res_targets(sample.gt),
        cand,
        teacher=out_t,
        emb_student=emb_s,
        emb_teacher=emb_t,
        token_valid=token_valid,
    )
