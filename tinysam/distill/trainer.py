"""The training loop: Adam, seeded per-step randomness, exact resume, JSON-lines metrics, and
data parallelism over processes started by ``torchrun`` (gloo on CPU, nccl on GPU).

Determinism: every random choice of step t on rank r (images, masks, prompts, SAMI patches) comes
from generators seeded with (seed, t, r), and the data position is a pure function of t. A
checkpoint stores the student, the optimizer, the global RNG states and the next step/data
position, so "3 steps + resume 3 steps" equals "6 steps" bit for bit.

Data parallel: the models' entry points are methods (``encode_image``, ``decode_prompts``), not
``forward``, so instead of wrapping in DistributedDataParallel the gradients are averaged with one
``all_reduce`` per step; every rank then applies the same Adam update and the weights stay equal.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .config import TrainConfig
from .data import Record, Sample, list_records, load_image_tensor, load_sample, step_positions, stream_index
from .kd_step import image_step
from .sami import SamiDecoder, sami_step
from .shapes_warmup import random_shapes
from .teacher_cache import TeacherCache, file_sha256

CHECKPOINT = "last.pt"


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _init_distributed() -> bool:
    """Join the torchrun process group if WORLD_SIZE > 1; returns True if this call created it."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return True


def _barrier() -> None:
    if _dist_info()[1] > 1:
        dist.barrier()


def step_generators(seed: int, step: int, rank: int) -> tuple[torch.Generator, np.random.Generator]:
    """The torch and numpy generators of one (step, rank)."""
    mixed = int(np.random.default_rng([seed, step, rank]).integers(0, 2**62))
    return torch.Generator().manual_seed(mixed), np.random.default_rng([seed, step, rank, 1])


def build_models(cfg: TrainConfig) -> tuple[nn.Module, nn.Module | None]:
    """(student in train mode, frozen teacher or None)."""
    from tinysam import build_sam

    student = build_sam(cfg.student, cfg.student_checkpoint, cfg.image_size, seed=cfg.seed)
    teacher = None
    if cfg.stage in ("kd", "sami"):
        teacher = build_sam(cfg.teacher, cfg.teacher_checkpoint, cfg.image_size)
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


def build_cache(cfg: TrainConfig, teacher: nn.Module, records: list[Record], rank: int, world: int) -> TeacherCache:
    """Teacher embeddings of all records, computed once (split over ranks) and memory-mapped."""
    root = Path(cfg.cache_dir) if cfg.cache_dir else Path(cfg.out) / "teacher_cache"
    cache = TeacherCache(root, cfg.teacher, file_sha256(cfg.teacher_checkpoint), teacher.image_size, cfg.cache_dtype)

    @torch.no_grad()
    def embed(rec: Record) -> torch.Tensor:
        image, _ = load_image_tensor(rec, teacher.config)
        return teacher.encode_image(teacher.preprocess(image))

    cache.build(records, embed, rank, world, _barrier, progress=cfg.progress)
    return cache


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


def _all_reduce_grads(params: list[nn.Parameter], world: int) -> None:
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(g).clone()
        offset += n


def _average_buffers(model: nn.Module, world: int) -> None:
    """Average floating buffers (BatchNorm running stats) over ranks so the replicas stay equal."""
    for buf in model.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf, op=dist.ReduceOp.SUM)
            buf /= world


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_checkpoint(path: Path, step: int, cfg: TrainConfig, student: nn.Module, opt, extra: nn.Module | None) -> None:
    """Atomically write everything needed to continue exactly at ``step``."""
    state = {
        "step": step,
        "data_position": step * cfg.images_per_step * _dist_info()[1],
        "config": cfg.to_dict(),
        "student": student.state_dict(),
        "optimizer": opt.state_dict(),
        "extra": extra.state_dict() if extra is not None else None,
        "rng": _rng_state(),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _check_resumable(saved: dict, cfg: TrainConfig) -> None:
    ignore = {"steps", "progress", "checkpoint_every", "log_every"}
    for key, value in cfg.to_dict().items():
        if key not in ignore and saved.get(key) != value:
            raise ValueError(f"cannot resume: {key} was {saved.get(key)!r}, now {value!r}")


def _load_sample(cfg: TrainConfig, rec: Record, student: nn.Module, rng: np.random.Generator) -> Sample:
    if cfg.stage == "sami":
        image, input_size = load_image_tensor(rec, student.config)
        return Sample(rec.image_id, image, tuple(input_size), (0, 0), torch.zeros(0, 1, 1, dtype=torch.bool), [])
    if cfg.stage == "warmup":
        image, input_size = load_image_tensor(rec, student.config)
        gt = random_shapes(cfg.prompts_per_image, tuple(input_size), student.config.image_size, rng)
        return Sample(rec.image_id, image, tuple(input_size), (0, 0), gt, [])
    return load_sample(rec, student.config, cfg.prompts_per_image, rng, cfg.min_mask_pixels)


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    """Run (or continue) one training run; returns the last logged metrics. Rank 0 writes
    ``<out>/config.json``, ``metrics.jsonl``, ``last.pt`` (resume state) and ``student.pt``."""
    cfg.validate()
    created = _init_distributed()
    rank, world = _dist_info()
    # TinyViT's attention-bias gather backpropagates through index_put(accumulate=True), whose
    # multi-threaded CPU kernel adds in a varying order; the deterministic kernel fixes the bits.
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(cfg.deterministic)
    try:
        return _train(cfg, resume, rank, world)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        if created:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, resume: bool, rank: int, world: int) -> dict:
    out = Path(cfg.out)
    ckpt_path = out / CHECKPOINT
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if not resume and ckpt_path.exists():
            raise ValueError(f"{out} already holds a run; pass resume or choose another out directory")
        cfg.save(out / "config.json")
    torch.manual_seed(cfg.seed)
    student, teacher = build_models(cfg)
    records = list_records(cfg.data, cfg.data_fraction, cfg.seed)
    if cfg.freeze_batchnorm and cfg.bn_calibration_images > 0 and not resume:
        picks = [records[stream_index(i, len(records), cfg.seed + 1)] for i in range(cfg.bn_calibration_images)]
        calibrate_batchnorm(student, (student.preprocess(load_image_tensor(r, student.config)[0]) for r in picks))
    cache = build_cache(cfg, teacher, records, rank, world) if teacher is not None else None
    extra = None
    if cfg.stage == "sami":
        extra = SamiDecoder(student.config.prompt_embed_dim, student.embedding_size, cfg.sami_decoder_depth)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 1)
            extra.pos_embed.data.normal_(0, 0.02)
        params = list(student.image_encoder.parameters()) + list(extra.parameters())
        groups = [{"params": params}]
    else:
        groups = param_groups(student, cfg)
        params = [p for g in groups for p in g["params"]]
    opt = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    base_lrs = [g["lr"] for g in opt.param_groups]
    start = 0
    if resume:
        if not ckpt_path.exists():
            raise ValueError(f"nothing to resume: {ckpt_path} does not exist")
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        _check_resumable(state["config"], cfg)
        student.load_state_dict(state["student"])
        opt.load_state_dict(state["optimizer"])
        if extra is not None:
            extra.load_state_dict(state["extra"])
        _set_rng_state(state["rng"])
        start = int(state["step"])
    bar = None
    if cfg.progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc=f"{cfg.stage} {cfg.student}", dynamic_ncols=True)
    last: dict = {}
    t0 = time.time()
    for step in range(start, cfg.steps):
        gen, rng = step_generators(cfg.seed, step, rank)
        sums: dict[str, float] = {}
        n_img = n_prompts = 0
        for pos in step_positions(step, rank, world, cfg.images_per_step):
            rec = records[stream_index(pos, len(records), cfg.seed)]
            sample = _load_sample(cfg, rec, student, rng)
            if cfg.stage == "sami":
                parts = sami_step(student, extra, sample, cache, gen, cfg.sami_mask_ratio)
            else:
                parts = image_step(cfg, student, sample, gen, teacher, cache)
            if parts is None:
                continue
            (parts["total"] / cfg.images_per_step).backward()
            n_img += 1
            n_prompts += int(sample.gt.shape[0])
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
        if world > 1:
            _all_reduce_grads(params, world)
            _average_buffers(student, world)
        for group, base in zip(opt.param_groups, base_lrs):
            group["lr"] = base * lr_factor(cfg, step)
        opt.step()
        opt.zero_grad(set_to_none=True)
        last = {"step": step + 1, **{k: v / max(n_img, 1) for k, v in sums.items()}, "lr": opt.param_groups[-1]["lr"],
                "images": n_img, "prompts": n_prompts, "seconds": round(time.time() - t0, 3)}
        if rank == 0:
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(last) + "\n")
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
                save_checkpoint(ckpt_path, step + 1, cfg, student, opt, extra)
            if bar is not None:
                bar.update(1)
                bar.set_postfix({k: f"{v:.4f}" for k, v in last.items() if k not in ("step", "images", "prompts", "seconds")})
    if bar is not None:
        bar.close()
    if rank == 0:
        torch.save(student.eval().state_dict(), out / "student.pt")
    _barrier()
    last["weights_sha256"] = weights_digest(student)
    last["rank"], last["world"] = rank, world
    return last


def weights_digest(model: nn.Module) -> str:
    """sha256 over the bytes of every state_dict tensor (ranks of one run must agree)."""
    import hashlib

    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().contiguous().numpy().tobytes())
    return h.hexdigest()
