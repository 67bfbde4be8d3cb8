"""Where and in which precision the trainer computes: device choice, autocast, the gradient scaler,
the process group backend and per-device random generators.

``auto`` picks CUDA when it is present. Under ``torchrun`` every rank takes the GPU named by
``LOCAL_RANK`` (one GPU per rank) and the process group uses nccl; CPU ranks use gloo. Forward passes
run under ``torch.autocast`` for bf16/fp16; losses and the optimizer stay in fp32, and fp16 uses a
gradient scaler (bf16 has fp32's exponent range and needs none).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import numpy as np
import torch

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_device_name(name: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; raises ValueError naming the known forms."""
    base, _, index = name.partition(":")
    if base not in DEVICES or (index and (base != "cuda" or not index.isdigit())):
        raise ValueError(f"device must be one of auto, cpu, cuda, cuda:N; got {name!r}")
    return name


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """The torch device of one process. ``auto``/``cuda`` under torchrun use GPU ``LOCAL_RANK``."""
    check_device_name(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available (torch {torch.__version__})")
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    index = int(name.split(":")[1]) if ":" in name else local_rank
    if index >= torch.cuda.device_count():
        raise ValueError(f"device cuda:{index} requested but only {torch.cuda.device_count()} GPU(s) are visible")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def backend_for(device: torch.device) -> str:
    """Process group backend: nccl for CUDA tensors, gloo for CPU tensors."""
    return "nccl" if device.type == "cuda" else "gloo"


@dataclass(frozen=True)
class Precision:
    """Autocast settings of one run."""

    name: str
    device: torch.device

    def __post_init__(self) -> None:
        if self.name not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.name!r}")
        if self.name == "fp16" and self.device.type == "cpu":
            raise ValueError("precision fp16 needs a CUDA device (CPU autocast supports bf16)")
        if self.name == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(f"precision bf16 is not supported on {torch.cuda.get_device_name(self.device)}")

    def autocast(self) -> contextlib.AbstractContextManager:
        """Context for the forward passes (a no-op for fp32)."""
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[self.name])

    def scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, enabled only for fp16."""
        return torch.amp.GradScaler(self.device.type, enabled=self.name == "fp16")


def step_generators(seed: int, step: int, rank: int, device: torch.device) -> tuple[torch.Generator, np.random.Generator]:
    """The torch generator (on ``device``) and numpy generator of one (step, rank)."""
    mixed = int(np.random.default_rng([seed, step, rank]).integers(0, 2**62))
    return torch.Generator(device=device).manual_seed(mixed), np.random.default_rng([seed, step, rank, 1])


def image_generator(seed: int, position: int, device: torch.device) -> torch.Generator:
    """The torch generator of the image at stream ``position`` (prompt sampling): a pure function of
    (seed, position), so batching, workers and ranks do not change any image's prompts."""
    mixed = int(np.random.default_rng([seed, position, 2]).integers(0, 2**62))
    return torch.Generator(device=device).manual_seed(mixed)


def sample_rng(seed: int, position: int) -> np.random.Generator:
    """The numpy generator that picks the masks (or warm-up shapes) of the image at ``position``."""
    return np.random.default_rng([seed, position, 1])


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (for honest step-time splits on CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
