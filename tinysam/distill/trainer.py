"""The training loop: Adam, seeded per-step randomness, exact resume, JSON-lines metrics with
throughput, mixed precision on any device, and data parallelism over processes started by
``torchrun`` (nccl on GPUs, one GPU per rank from ``LOCAL_RANK``; gloo on CPUs).

Determinism: every random choice of an image (masks, prompts, shapes, SAMI patches) comes from
generators seeded with (seed, stream position), and the data position is a pure function of the
step. A resume state stores the student, the optimizer, the gradient scaler, the global RNG states
and the next step, so "3 steps + resume 3 steps" equals "6 steps" bit for bit on a CPU.

Data parallel: the models' entry points are methods (``encode_image``, ``decode_prompts``), not
``forward``, so instead of wrapping in DistributedDataParallel the gradients are averaged with one
``all_reduce`` per step; every rank then applies the same Adam update and the weights stay equal.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from .config import TrainConfig
from .data import Record, list_records, load_image_tensor, stream_index
from .device import Precision, backend_for, image_generator, resolve_device
from .kd_step import batch_step
from .loader import make_loader, to_device
from .model_setup import build_models, calibrate_batchnorm, lr_factor, param_groups, set_train_mode
from .resume_state import STUDENT_FILE, load_state, refuse_legacy_pickle, save_state, save_student
from .sami import SamiDecoder, sami_batch
from .teacher_cache import TeacherCache, file_sha256
from .throughput import StepTimer

__all__ = ["train", "build_models", "calibrate_batchnorm", "set_train_mode", "param_groups", "lr_factor",
           "weights_digest"]


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _init_distributed(device: torch.device) -> bool:
    """Join the torchrun process group (nccl for CUDA, gloo for CPU tensors) when started by torchrun
    (WORLD_SIZE set, even to 1: a one-GPU torchrun still runs the nccl all-reduce); returns True if
    this call created it."""
    if "WORLD_SIZE" not in os.environ or dist.is_initialized():
        return False
    dist.init_process_group(backend=backend_for(device), device_id=device if device.type == "cuda" else None)
    return True


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def build_cache(cfg: TrainConfig, teacher: nn.Module, records: list[Record], rank: int, world: int,
                device: torch.device, precision: Precision) -> TeacherCache:
    """Teacher embeddings of all records, computed once on ``device`` in batches (rows split over ranks)."""
    root = Path(cfg.cache_dir) if cfg.cache_dir else Path(cfg.out) / "teacher_cache"
    cache = TeacherCache(root, cfg.teacher, file_sha256(cfg.teacher_checkpoint), teacher.image_size, cfg.cache_dtype)

    @torch.no_grad()
    def embed_batch(recs: list[Record]) -> torch.Tensor:
        x = torch.cat([teacher.preprocess(load_image_tensor(r, teacher.config)[0].to(device)) for r in recs])
        with precision.autocast():
            return teacher.encode_image(x).float()

    cache.build(records, rank=rank, world=world, barrier=_barrier, progress=cfg.progress, embed_batch=embed_batch,
                batch_size=cfg.cache_batch_size)
    return cache


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


def _check_resumable(saved: dict, cfg: TrainConfig) -> None:
    # how the run is executed may change (a CPU run may continue on a GPU); what it computes may not
    ignore = {"steps", "progress", "checkpoint_every", "log_every", "num_workers", "prefetch_factor", "device",
              "compile", "cache_batch_size"}
    for key, value in cfg.to_dict().items():
        if key not in ignore and saved.get(key) != value:
            raise ValueError(f"cannot resume: {key} was {saved.get(key)!r}, now {value!r}")


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    """Run (or continue) one training run; returns the last logged metrics plus the run's throughput
    summary. Rank 0 writes ``<out>/config.json``, ``metrics.jsonl``, ``resume.json`` + its tensor file,
    ``throughput.json`` and ``student.safetensors``."""
    cfg.validate()
    device = resolve_device(cfg.device)
    precision = Precision(cfg.precision, device)
    created = _init_distributed(device)
    rank, world = _dist_info()
    # TinyViT's attention-bias gather backpropagates through index_put(accumulate=True), whose
    # multi-threaded CPU kernel adds in a varying order; the deterministic kernel fixes the bits.
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(cfg.deterministic, warn_only=device.type == "cuda")
    try:
        return _train(cfg, resume, rank, world, device, precision)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        if created:
            dist.destroy_process_group()


def _compile(model: nn.Module) -> None:
    """Compile the image encoder and mask decoder in place (``nn.Module.compile``: state_dict keys stay)."""
    model.image_encoder.compile()
    model.mask_decoder.compile()


def _train(cfg: TrainConfig, resume: bool, rank: int, world: int, device: torch.device, precision: Precision) -> dict:
    out = Path(cfg.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        refuse_legacy_pickle(out)
        if not resume and (out / "resume.json").exists():
            raise ValueError(f"{out} already holds a run; pass resume or choose another out directory")
        cfg.save(out / "config.json")
    torch.manual_seed(cfg.seed)
    student, teacher = build_models(cfg, device)
    records = list_records(cfg.data, cfg.data_fraction, cfg.seed)
    state = load_state(out) if resume else None
    if state is not None:
        _check_resumable(state.config, cfg)
    if cfg.freeze_batchnorm and cfg.bn_calibration_images > 0 and state is None:
        picks = [records[stream_index(i, len(records), cfg.seed + 1)] for i in range(cfg.bn_calibration_images)]
        calibrate_batchnorm(student, (student.preprocess(load_image_tensor(r, student.config)[0].to(device))
                                      for r in picks))
    cache = None
    if teacher is not None and not cfg.teacher_online:
        cache = build_cache(cfg, teacher, records, rank, world, device, precision)
    extra = None
    if cfg.stage == "sami":
        extra = SamiDecoder(student.config.prompt_embed_dim, student.embedding_size, cfg.sami_decoder_depth)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 1)
            extra.pos_embed.data.normal_(0, 0.02)
        extra.to(device)
        params = list(student.image_encoder.parameters()) + list(extra.parameters())
        groups = [{"params": params}]
    else:
        groups = param_groups(student, cfg)
        params = [p for g in groups for p in g["params"]]
    opt = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = precision.scaler()
    base_lrs = [g["lr"] for g in opt.param_groups]
    start = 0
    if state is not None:
        student.load_state_dict(state.student)
        opt.load_state_dict(state.optimizer)
        if extra is not None:
            extra.load_state_dict(state.extra)
        if state.scaler:
            scaler.load_state_dict(state.scaler)
        state.restore_rng()
        start = state.step
    if cfg.compile:
        _compile(student)
        if teacher is not None:
            _compile(teacher)
    bar = None
    if cfg.progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=start, desc=f"{cfg.stage} {cfg.student}", dynamic_ncols=True)
    loader = iter(make_loader(cfg, records, student.config, cache, start, rank, world, pin=device.type == "cuda"))
    timer = StepTimer(device)
    last: dict = {}
    t0 = time.time()
    for step in range(start, cfg.steps):
        sums: dict[str, float] = {}
        n_img = n_prompts = 0
        timer.start_step()
        for _ in range(cfg.grad_accum):
            with timer.phase("data"):
                batch = to_device(next(loader), student, device)
            gens = [image_generator(cfg.seed, p, device) for p in batch.batch.positions]
            with timer.phase("forward"):
                if cfg.stage == "sami":
                    parts = sami_batch(student, extra, batch.x, batch.teacher_emb if cache is not None else
                                       _online_embedding(teacher, batch.x, precision), gens, cfg.sami_mask_ratio,
                                       precision.autocast)
                else:
                    parts = batch_step(cfg, student, batch.x, batch.gt, batch.valid, gens, precision.autocast,
                                       teacher, batch.teacher_emb)
                ok = parts.pop("image_valid")
                loss = (parts["total"] * ok).sum() / cfg.images_per_step
            if bool(ok.any()):
                with timer.phase("backward"):
                    scaler.scale(loss).backward()
            n_img += int(ok.sum())
            n_prompts += int((batch.valid.any(dim=1) * batch.valid.sum(dim=1)).sum()) if cfg.stage != "sami" else 0
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float((v.detach() * ok).sum())
        with timer.phase("optimizer"):
            if dist.is_initialized():
                _all_reduce_grads(params, world)
                _average_buffers(student, world)
            for group, base in zip(opt.param_groups, base_lrs):
                group["lr"] = base * lr_factor(cfg, step)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
        times = timer.end_step(n_img, n_prompts)
        last = {"step": step + 1, **{k: v / max(n_img, 1) for k, v in sums.items()}, "lr": opt.param_groups[-1]["lr"],
                "images": n_img, "prompts": n_prompts, "seconds": round(time.time() - t0, 3), **times}
        if rank == 0:
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(last) + "\n")
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
                save_state(out, step + 1, (step + 1) * cfg.images_per_step * world, cfg.to_dict(), student, opt,
                           extra, scaler)
            if bar is not None:
                bar.update(1)
                bar.set_postfix({k: f"{v:.4f}" for k, v in last.items() if k in ("total", "mask", "output", "sami_mse")})
    if bar is not None:
        bar.close()
    summary = timer.summary(world)
    if rank == 0:
        save_student(out / STUDENT_FILE, student.eval())
        (out / "throughput.json").write_text(json.dumps({"device": str(device), "precision": precision.name,
                                                         "batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum,
                                                         "world": world, **summary}, indent=2) + "\n")
    _barrier()
    last["weights_sha256"] = weights_digest(student)
    last["rank"], last["world"] = rank, world
    last["backend"] = dist.get_backend() if dist.is_initialized() else None
    last["throughput"] = summary
    return last


@torch.no_grad()
def _online_embedding(teacher: nn.Module, x: torch.Tensor, precision: Precision) -> torch.Tensor:
    with precision.autocast():
        return teacher.encode_image(x).float()


def weights_digest(model: nn.Module) -> str:
    """sha256 over the bytes of every state_dict tensor (ranks of one run must agree)."""
    import hashlib

    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
