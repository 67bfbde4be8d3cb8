"""Building what a training run trains: models on their device, BatchNorm calibration and freezing,
Adam parameter groups and the learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import TrainConfig


def build_models(cfg: TrainConfig, device: torch.device | None = None) -> tuple[nn.Module, nn.Module | None]:
    """(student in train mode, frozen teacher in eval mode or None), on ``device`` (default CPU)."""
    from tinysam import build_sam

    device = device or torch.device("cpu")
    student = build_sam(cfg.student, cfg.student_checkpoint, cfg.image_size, seed=cfg.seed).to(device)
    teacher = None
    if cfg.stage in ("kd", "sami"):
        teacher = build_sam(cfg.teacher, cfg.teacher_checkpoint, cfg.image_size).to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        for key in ("image_size", "resize", "patch_size"):
            if getattr(teacher.config, key) != getattr(student.config, key):
                raise ValueError(f"teacher and student differ in {key}: {getattr(teacher.config, key)} vs "
                                 f"{getattr(student.config, key)}")
        if cfg.init_decoder_from_teacher and cfg.student_checkpoint is None and cfg.stage == "kd":
            student.prompt_encoder.load_state_dict(teacher.prompt_encoder.state_dict())
            student.mask_decoder.load_state_dict(teacher.mask_decoder.state_dict())
    return set_train_mode(student, cfg.freeze_batchnorm, cfg.encoder_fixed), teacher


def _batchnorms(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def calibrate_batchnorm(model: nn.Module, images) -> int:
    """Set every BatchNorm layer's running statistics of ``model.image_encoder`` to their plain average
    over ``images`` (preprocessed [1, 3, S, S] tensors), then leave those layers frozen (eval mode).
    Returns the number of images used."""
    bns = _batchnorms(model.image_encoder)
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
        bn.train()
    n = 0
    with torch.no_grad():
        for x in images:
            model.image_encoder(x)
            n += 1
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
        bn.eval()
    return n


def set_train_mode(model: nn.Module, freeze_batchnorm: bool, fixed_encoder: bool = False) -> nn.Module:
    """``model.train()``, with every BatchNorm layer kept in eval mode if ``freeze_batchnorm``, and the
    whole image encoder (its BatchNorm statistics included) if ``fixed_encoder``."""
    model.train()
    if fixed_encoder:
        model.image_encoder.eval()
    if freeze_batchnorm:
        for bn in _batchnorms(model):
            bn.eval()
    return model


def param_groups(student: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Adam groups: the image encoder at ``lr`` (left out and frozen if ``cfg.encoder_fixed``), prompt
    encoder + mask decoder at ``decoder_lr``."""
    encoder = list(student.image_encoder.parameters())
    ids = {id(p) for p in encoder}
    rest = [p for p in student.parameters() if id(p) not in ids]
    rest_group = {"params": rest, "lr": cfg.decoder_lr or cfg.lr}
    if cfg.encoder_fixed:
        for p in encoder:
            p.requires_grad_(False)
        return [rest_group]
    return [{"params": encoder, "lr": cfg.lr}, rest_group]


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Multiplier of every group's base learning rate at ``step`` (0-based) under ``cfg.lr_schedule``."""
    if cfg.lr_schedule == "constant" or cfg.steps <= 1:
        return 1.0
    progress = min(step / (cfg.steps - 1), 1.0)
    return cfg.lr_final_fraction + (1.0 - cfg.lr_final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))
