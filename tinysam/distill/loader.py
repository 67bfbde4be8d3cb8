"""The training data pipeline: a ``torch.utils.data.DataLoader`` over stream positions.

Every image of the run has a stream position (``step_positions``); the record, the chosen masks (or
warm-up shapes) and the cached teacher embedding of a position depend on (seed, position) only, so
workers, prefetching, batching and resuming never change what a step sees. The loader yields
`TrainBatch`es of ``batch_size`` images on the CPU (pinned when training on CUDA); `to_device` moves
one onto the device and normalizes it there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from tinysam.config import ModelConfig

from .config import TrainConfig
from .data import Record, Sample, load_image_tensor, load_sample, step_positions, stream_index
from .device import sample_rng
from .shapes_warmup import random_shapes
from .teacher_cache import TeacherCache


@dataclass
class TrainBatch:
    """B images of one forward pass. ``gt`` holds K = max masks per image (or a fixed count) rows per
    image; rows past an image's own masks are padding (``valid`` False)."""

    positions: list[int]
    image_ids: list[str]
    images: torch.Tensor  # [B, 3, S, S] float 0-255, resized, zero outside input_sizes
    input_sizes: torch.Tensor  # [B, 2] long (h, w)
    gt: torch.Tensor  # [B, K, S, S] bool
    valid: torch.Tensor  # [B, K] bool
    teacher_emb: torch.Tensor | None  # [B, 256, E, E] (cache dtype) or None

    def pin_memory(self) -> TrainBatch:
        """Page-locked copies (the DataLoader calls this with ``pin_memory=True``)."""
        pin = [t.pin_memory() for t in (self.images, self.input_sizes, self.gt, self.valid)]
        emb = self.teacher_emb.pin_memory() if self.teacher_emb is not None else None
        return TrainBatch(self.positions, self.image_ids, *pin, emb)

    @property
    def n_prompts(self) -> int:
        """Real (non-padding) masks in the batch."""
        return int(self.valid.sum())


def sample_for(cfg: TrainConfig, rec: Record, model_cfg: ModelConfig, position: int) -> Sample:
    """The sample of stream ``position`` for the stage of ``cfg`` (a pure function of seed and position)."""
    rng = sample_rng(cfg.seed, position)
    if cfg.stage == "sami":
        image, input_size = load_image_tensor(rec, model_cfg)
        return Sample(rec.image_id, image, tuple(input_size), (0, 0), torch.zeros(0, 1, 1, dtype=torch.bool), [])
    if cfg.stage == "warmup":
        image, input_size = load_image_tensor(rec, model_cfg)
        gt = random_shapes(cfg.prompts_per_image, tuple(input_size), model_cfg.image_size, rng)
        return Sample(rec.image_id, image, tuple(input_size), (0, 0), gt, [])
    return load_sample(rec, model_cfg, cfg.prompts_per_image, rng, cfg.min_mask_pixels)


class StreamDataset(Dataset):
    """Map-style data set indexed by stream position: (position, sample, teacher embedding or None)."""

    def __init__(self, cfg: TrainConfig, records: Sequence[Record], model_cfg: ModelConfig,
                 cache: TeacherCache | None = None) -> None:
        self.cfg, self.records, self.model_cfg, self.cache = cfg, list(records), model_cfg, cache

    def __len__(self) -> int:
        return 1 << 62  # endless stream; the sampler bounds it

    def __getitem__(self, position: int):
        rec = self.records[stream_index(position, len(self.records), self.cfg.seed)]
        sample = sample_for(self.cfg, rec, self.model_cfg, position)
        sample.gt_original = []  # evaluation only; not shipped to the trainer
        emb = self.cache.get(rec.image_id, dtype=None) if self.cache is not None else None
        return position, sample, emb


class StepBatches(Sampler[list[int]]):
    """Positions of this rank for steps ``start..steps-1``, ``grad_accum`` batches per step."""

    def __init__(self, cfg: TrainConfig, start: int, rank: int, world: int) -> None:
        self.cfg, self.start, self.rank, self.world = cfg, start, rank, world

    def __len__(self) -> int:
        return (self.cfg.steps - self.start) * self.cfg.grad_accum

    def __iter__(self) -> Iterator[list[int]]:
        b = self.cfg.batch_size
        for step in range(self.start, self.cfg.steps):
            positions = step_positions(step, self.rank, self.world, b * self.cfg.grad_accum)
            for i in range(self.cfg.grad_accum):
                yield positions[i * b : (i + 1) * b]


def collate(items: list, image_size: int, fixed_prompts: int | None = None) -> TrainBatch:
    """Stack samples into one `TrainBatch` (masks padded to the batch maximum or ``fixed_prompts``)."""
    b = len(items)
    k = fixed_prompts if fixed_prompts is not None else max(max(int(s.gt.shape[0]) for _, s, _ in items), 1)
    images = torch.zeros(b, 3, image_size, image_size)
    sizes = torch.zeros(b, 2, dtype=torch.long)
    gt = torch.zeros(b, k, image_size, image_size, dtype=torch.bool)
    valid = torch.zeros(b, k, dtype=torch.bool)
    for i, (_, s, _) in enumerate(items):
        h, w = s.image.shape[-2:]
        images[i, :, :h, :w] = s.image[0]
        sizes[i] = torch.tensor([h, w])
        n = int(s.gt.shape[0]) if s.gt.dim() == 3 and s.gt.shape[-1] == image_size else 0
        gt[i, :n] = s.gt[:n]
        valid[i, :n] = True
    embs = [e for _, _, e in items]
    emb = torch.cat(embs) if all(e is not None for e in embs) else None
    return TrainBatch([p for p, _, _ in items], [s.image_id for _, s, _ in items], images, sizes, gt, valid, emb)


class _Collate:
    """Picklable collate function (workers)."""

    def __init__(self, image_size: int, fixed_prompts: int | None) -> None:
        self.image_size, self.fixed_prompts = image_size, fixed_prompts

    def __call__(self, items: list) -> TrainBatch:
        return collate(items, self.image_size, self.fixed_prompts)


def make_loader(cfg: TrainConfig, records: Sequence[Record], model_cfg: ModelConfig, cache: TeacherCache | None,
                start: int, rank: int, world: int, pin: bool) -> DataLoader:
    """The DataLoader of one rank from step ``start`` (workers, pinned memory, prefetch per ``cfg``)."""
    fixed = cfg.prompts_per_image if cfg.fixed_shapes else None
    workers = cfg.num_workers
    return DataLoader(
        StreamDataset(cfg, records, model_cfg, cache),
        batch_sampler=StepBatches(cfg, start, rank, world),
        num_workers=workers,
        collate_fn=_Collate(model_cfg.image_size, fixed),
        pin_memory=pin,
        prefetch_factor=cfg.prefetch_factor if workers > 0 else None,
        persistent_workers=False,
    )


@dataclass
class DeviceBatch:
    """A `TrainBatch` on the device, images normalized and padded as ``model.preprocess`` does."""

    batch: TrainBatch
    x: torch.Tensor  # [B, 3, S, S] normalized, zero padding
    gt: torch.Tensor  # [B, K, S, S] bool
    valid: torch.Tensor  # [B, K] bool
    teacher_emb: torch.Tensor | None  # [B, 256, E, E] float32


def to_device(batch: TrainBatch, model: torch.nn.Module, device: torch.device) -> DeviceBatch:
    """Move ``batch`` to ``device`` (non-blocking from pinned memory) and normalize its images."""
    nb = device.type == "cuda"
    images = batch.images.to(device, non_blocking=nb)
    s = images.shape[-1]
    sizes = batch.input_sizes.to(device, non_blocking=nb)
    ar = torch.arange(s, device=device)
    inside = (ar[None, :, None] < sizes[:, 0, None, None]) & (ar[None, None, :] < sizes[:, 1, None, None])
    x = (images - model.pixel_mean) / model.pixel_std * inside[:, None].to(images.dtype)
    emb = batch.teacher_emb.to(device, non_blocking=nb).float() if batch.teacher_emb is not None else None
    return DeviceBatch(batch, x, batch.gt.to(device, non_blocking=nb), batch.valid.to(device, non_blocking=nb), emb)
