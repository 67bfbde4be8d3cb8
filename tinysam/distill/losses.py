"""TinySAM's losses: full-stage distillation (embedding, token, output), hard mask weighting, and the
ground-truth mask (focal + dice) and IoU-prediction losses. All distances are L1 (the paper: MSE is
"too small to be well optimized"). Masks are compared in the low-res (4E x 4E) decoder frame.

A batch of B images holds B x K prompt rows (``prompt_valid`` [B, K] marks the real ones; padding rows
are ignored). Every part is reduced per image exactly as for one image alone, so ``batch_losses``
returns [B] tensors; losses are computed in fp32 whatever precision the forward pass ran in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class DecodeOut:
    """Decoder outputs of one model for K prompts."""

    low_res: torch.Tensor  # [K, 4, 4E, 4E] logits
    iou: torch.Tensor  # [K, 4]
    tokens: torch.Tensor | None = None  # [K, 5 + N, C] two-way transformer output tokens


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss averaged over the last two axes: [K, M, H, W] -> [K, M]."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.mean(dim=(-2, -1))


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft dice loss: [K, M, H, W] -> [K, M]."""
    p = torch.sigmoid(logits).flatten(-2)
    t = target.flatten(-2)
    return 1 - (2 * (p * t).sum(-1) + smooth) / (p.sum(-1) + t.sum(-1) + smooth)


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of (logits > 0) with a {0,1} target: [K, M, H, W] -> [K, M] (no grad)."""
    with torch.no_grad():
        pred = logits > 0
        tgt = target > 0.5
        inter = (pred & tgt).flatten(-2).sum(-1).float()
        union = (pred | tgt).flatten(-2).sum(-1).float()
        return inter / union.clamp(min=1.0)


def hard_mask_weights(iou_teacher: torch.Tensor, iou_student: torch.Tensor, eps: float) -> torch.Tensor:
    """TinySAM's H_i = sigmoid(IoU(T, GT) / (IoU(S, GT) + eps) - 1): 0.5 when the student matches
    the teacher, above 0.5 when it is worse. Detached (a weight, not a target)."""
    return torch.sigmoid(iou_teacher / (iou_student + eps) - 1.0).detach()


def token_l1(student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """L1 between token sets [K, T, C] over the valid tokens [K, T] (empty slots excluded)."""
    w = valid.to(student.dtype)[..., None]
    return ((student - teacher).abs() * w).sum() / (w.sum() * student.shape[-1]).clamp(min=1.0)


def _masked_min(values: torch.Tensor, cand: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    big = torch.full_like(values, torch.finfo(values.dtype).max)
    v, idx = torch.where(cand, values, big).min(dim=1)
    return v, idx


def _per_image_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """[B*K] per-prompt values -> [B] means over each image's valid prompts (0 for an empty image)."""
    v = values.view(valid.shape) * valid
    return v.sum(dim=1) / valid.sum(dim=1).clamp(min=1)


def _fp32(out: DecodeOut | None) -> DecodeOut | None:
    if out is None:
        return None
    return DecodeOut(out.low_res.float(), out.iou.float(), None if out.tokens is None else out.tokens.float())


def batch_losses(
    cfg,
    student: DecodeOut,
    gt_low: torch.Tensor,
    cand: torch.Tensor,
    prompt_valid: torch.Tensor,
    teacher: DecodeOut | None = None,
    emb_student: torch.Tensor | None = None,
    emb_teacher: torch.Tensor | None = None,
    token_valid: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """All enabled loss parts per image ([B] each) plus ``total`` [B] (a `TrainConfig` ``cfg`` holds
    weights and switches).

    Prompt rows are image-major: ``student`` outputs [B*K, ...], ``gt_low`` [B*K, 4E, 4E] in {0, 1},
    ``cand`` [B*K, 4] bool (tokens that answer each prompt), ``prompt_valid`` [B, K] bool. The GT losses
    take the best candidate per prompt (SAM's min-over-outputs for ambiguous prompts).
    """
    student, teacher = _fp32(student), _fp32(teacher)
    valid = prompt_valid.to(student.low_res.dtype)
    b = prompt_valid.shape[0]
    parts: dict[str, torch.Tensor] = {}
    total = student.low_res.sum() * 0.0 + torch.zeros(b, device=student.low_res.device)
    target = gt_low[:, None].expand_as(student.low_res).to(student.low_res.dtype)
    iou_s = mask_iou(student.low_res, target)
    cand_valid = cand & prompt_valid.flatten()[:, None]
    if cfg.use_mask_loss:
        combined = cfg.focal_weight * focal_loss(student.low_res, target) + cfg.dice_weight * dice_loss(
            student.low_res, target
        )
        best, _ = _masked_min(combined, cand)
        parts["mask"] = _per_image_mean(best, valid)
        total = total + parts["mask"]
    if cfg.use_iou_loss:
        err = ((student.iou - iou_s).abs() * cand_valid).sum(dim=1).view(b, -1).sum(dim=1)
        parts["iou"] = err / cand_valid.view(b, -1).sum(dim=1).clamp(min=1)
        total = total + cfg.iou_weight * parts["iou"]
    if teacher is not None:
        if cfg.use_embedding_loss and emb_student is not None and emb_teacher is not None:
            parts["embedding"] = (emb_student.float() - emb_teacher.float()).abs().mean(dim=(1, 2, 3))
            total = total + cfg.alpha * parts["embedding"]
        if cfg.use_token_loss and student.tokens is not None and teacher.tokens is not None:
            tv = token_valid if token_valid is not None else torch.ones(student.tokens.shape[:2], dtype=torch.bool,
                                                                        device=valid.device)
            w = (tv & prompt_valid.flatten()[:, None]).to(student.tokens.dtype)[..., None]
            diff = ((student.tokens - teacher.tokens).abs() * w).view(b, -1).sum(dim=1)
            parts["token"] = diff / (w.view(b, -1).sum(dim=1) * student.tokens.shape[-1]).clamp(min=1.0)
            total = total + cfg.beta * parts["token"]
        if cfg.use_output_loss:
            per_prompt = (student.low_res - teacher.low_res).abs().mean(dim=(1, 2, 3))
            if cfg.hard_mask_weighting:
                iou_t = mask_iou(teacher.low_res, target)
                best_t = torch.where(cand, iou_t, torch.zeros_like(iou_t)).max(dim=1).values
                best_s = torch.where(cand, iou_s, torch.zeros_like(iou_s)).max(dim=1).values
                h = hard_mask_weights(best_t, best_s, cfg.hmw_eps)
                parts["hmw_mean"] = _per_image_mean(h, valid)
                per_prompt = h * per_prompt
            parts["output"] = _per_image_mean(per_prompt, valid)
            total = total + cfg.gamma * parts["output"]
    parts["student_iou"] = _per_image_mean(torch.where(cand, iou_s, torch.zeros_like(iou_s)).max(dim=1).values, valid)
    parts["total"] = total
    return parts


def compute_losses(
    cfg,
    student: DecodeOut,
    gt_low: torch.Tensor,
    cand: torch.Tensor,
    teacher: DecodeOut | None = None,
    emb_student: torch.Tensor | None = None,
    emb_teacher: torch.Tensor | None = None,
    token_valid: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """`batch_losses` of one image's K prompts, as scalars."""
    valid = torch.ones(1, gt_low.shape[0], dtype=torch.bool, device=gt_low.device)
    parts = batch_losses(cfg, student, gt_low, cand, valid, teacher, emb_student, emb_teacher, token_valid)
    return {k: v[0] for k, v in parts.items()}
