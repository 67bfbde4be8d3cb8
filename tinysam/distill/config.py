"""Training configuration of the distillation trainer (one dataclass, JSON round-trip)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

STAGES = ("kd", "gt", "sami", "warmup")


@dataclass
class TrainConfig:
    """Every knob of one training run.

    Stages: ``kd`` = TinySAM full-stage distillation (embedding + token + output losses, plus the
    ground-truth mask and IoU losses); ``gt`` = ground-truth losses only, no teacher (used to train a
    small teacher from scratch); ``sami`` = EfficientSAM's masked image pretraining of the student
    image encoder against the teacher embedding; ``warmup`` = ground-truth losses on random rectangles
    and ellipses instead of the data's masks, image encoder frozen (teaches a fresh decoder to follow
    the prompt, see ``shapes_warmup``).
    """

    data: str = ""
    out: str = ""
    stage: str = "kd"
    teacher: str = "sam_vit_h"
    teacher_checkpoint: str | None = None
    student: str = "tinysam"
    student_checkpoint: str | None = None
    image_size: int | None = None
    # Copy the teacher's prompt encoder and mask decoder into the student at step 0 (MobileSAM/TinySAM
    # keep SAM's decoder). Only when the student is built without a checkpoint.
    init_decoder_from_teacher: bool = True
    steps: int = 1000
    # images per forward pass (per process) and forward passes per optimizer step: every step reads
    # batch_size * grad_accum images per process
    batch_size: int = 1
    grad_accum: int = 1
    prompts_per_image: int = 64
    data_fraction: float = 1.0
    lr: float = 1e-4
    # learning rate of the prompt encoder + mask decoder (None: ``lr``). A randomly initialized decoder
    # needs ~1e-3 to leave the "all background" plateau within a few hundred steps (see tests).
    decoder_lr: float | None = None
    # False: the image encoder stays fixed (no gradient, not in the optimizer). A randomly initialized
    # SAM decoder sits on an "all background" plateau for a few hundred steps; leaving it on a fixed
    # encoder first is much cheaper than with the encoder's backward pass (see bench/distill_story.py).
    train_encoder: bool = True
    # "constant", or "cosine": every group's learning rate follows a half cosine from its value at step 0
    # down to ``lr_final_fraction`` of it at the last step (a pure function of the step: resume-exact).
    lr_schedule: str = "constant"
    lr_final_fraction: float = 0.05
    weight_decay: float = 0.0
    seed: int = 0
    # hard prompt sampling
    hard_prompts: bool = True
    max_refine_rounds: int = 9  # rounds drawn uniformly from 0..max_refine_rounds
    box_fraction: float = 0.5  # share of prompts that are a (noisy) GT box instead of points
    box_noise: float = 0.1  # std of box-corner noise as a fraction of the box side (SAM)
    box_noise_max: float = 20.0  # cap in pixels at 1024, scaled with image_size
    min_mask_pixels: int = 4  # masks smaller than this in the low-res frame are skipped
    # losses
    hard_mask_weighting: bool = True
    hmw_eps: float = 1e-3
    alpha: float = 1.0  # embedding L1
    beta: float = 1.0  # token L1
    gamma: float = 1.0  # mask-output L1
    use_embedding_loss: bool = True
    use_token_loss: bool = True
    use_output_loss: bool = True
    use_mask_loss: bool = True
    use_iou_loss: bool = True
    focal_weight: float = 20.0  # SAM's 20:1 focal:dice
    dice_weight: float = 1.0
    iou_weight: float = 1.0
    # SAMI
    sami_mask_ratio: float = 0.75
    sami_decoder_depth: int = 1
    # bookkeeping
    checkpoint_every: int = 100
    log_every: int = 1
    cache_dir: str | None = None  # default: <out>/teacher_cache
    cache_dtype: str = "float16"
    progress: bool = True
    deterministic: bool = True  # torch.use_deterministic_algorithms during training
    # where and how: "auto" (CUDA when present), "cpu", "cuda" or "cuda:N"; fp32, bf16 or fp16 autocast
    device: str = "auto"
    precision: str = "fp32"
    # DataLoader worker processes (0: load in the training process) and batches prefetched per worker
    num_workers: int = 0
    prefetch_factor: int = 2
    # compute teacher embeddings in the loop instead of reading a disk cache
    teacher_online: bool = False
    cache_batch_size: int = 8  # images per teacher forward pass when filling the cache
    # torch.compile the student's and teacher's image encoder and mask decoder
    compile: bool = False
    # pad every image to prompts_per_image prompt rows (static shapes, e.g. for compile) instead of
    # the batch's largest mask count
    fixed_shapes: bool = False
    # True: BatchNorm layers (TinyViT's convolutions) use their running statistics and do not update
    # them. With one image per forward, training-mode statistics are per-image, which helps a model
    # learn from scratch but differs from eval mode; a last phase with frozen BatchNorm tunes the
    # model to the statistics it will use (bench/distill_story.py does both).
    freeze_batchnorm: bool = False
    # With freeze_batchnorm: before step 0, set the BatchNorm running statistics to their average over
    # this many training images (a fresh model's 0/1 statistics make its features nearly useless).
    bn_calibration_images: int = 0

    @property
    def images_per_step(self) -> int:
        """Images per optimizer step and process."""
        return self.batch_size * self.grad_accum

    @property
    def encoder_fixed(self) -> bool:
        """True when the image encoder takes no gradient and stays in eval mode (``train_encoder``
        off, or the ``warmup`` stage)."""
        return not self.train_encoder or self.stage == "warmup"

    def validate(self) -> TrainConfig:
        """Raise ValueError naming the first bad field; return self."""
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if not self.data:
            raise ValueError("data directory is required")
        if not self.out:
            raise ValueError("out directory is required")
        if not Path(self.data).is_dir():  # checked before anything is built or written
            raise ValueError(f"data directory does not exist: {self.data}")
        if self.stage in ("kd", "sami") and not self.teacher_checkpoint:
            raise ValueError(f"stage {self.stage!r} needs a teacher checkpoint")
        for name in ("steps", "batch_size", "grad_accum", "prompts_per_image", "checkpoint_every", "log_every",
                     "prefetch_factor", "cache_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.data_fraction <= 1.0:
            raise ValueError(f"data_fraction must be in (0, 1], got {self.data_fraction}")
        if not 0.0 <= self.box_fraction <= 1.0:
            raise ValueError(f"box_fraction must be in [0, 1], got {self.box_fraction}")
        if not 0.0 < self.sami_mask_ratio < 1.0:
            raise ValueError(f"sami_mask_ratio must be in (0, 1), got {self.sami_mask_ratio}")
        if self.max_refine_rounds < 0:
            raise ValueError(f"max_refine_rounds must be >= 0, got {self.max_refine_rounds}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.decoder_lr is not None and self.decoder_lr <= 0:
            raise ValueError(f"decoder_lr must be positive, got {self.decoder_lr}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be constant or cosine, got {self.lr_schedule!r}")
        if not 0.0 <= self.lr_final_fraction <= 1.0:
            raise ValueError(f"lr_final_fraction must be in [0, 1], got {self.lr_final_fraction}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        from .device import PRECISIONS, check_device_name

        check_device_name(self.device)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.cache_dtype not in ("float16", "float32"):
            raise ValueError(f"cache_dtype must be float16 or float32, got {self.cache_dtype!r}")
        return self

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Inverse of `to_dict`; unknown keys raise ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {', '.join(unknown)}")
        return cls(**d)

    def save(self, path: str | Path) -> None:
        """Write as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a JSON written by `save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))
