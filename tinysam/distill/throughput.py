"""Per-step timing of the trainer: data / forward / backward / optimizer seconds, images/s, prompts/s.

On CUDA every phase boundary synchronizes the device, so the split is the device's time, not the
time to queue kernels. The run summary leaves out the first step (warm-up, compilation).
"""

from __future__ import annotations

import contextlib
import statistics
import time

import torch

from .device import synchronize

PHASES = ("data", "forward", "backward", "optimizer")


class StepTimer:
    """Accumulates phase times within a step and keeps the per-step records of a run."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.records: list[dict[str, float]] = []
        self._current: dict[str, float] = {}
        self._t0 = 0.0

    def start_step(self) -> None:
        """Begin timing one optimizer step."""
        synchronize(self.device)
        self._current = dict.fromkeys(PHASES, 0.0)
        self._t0 = time.perf_counter()

    @contextlib.contextmanager
    def phase(self, name: str):
        """Add the time of the enclosed block to phase ``name``."""
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}; known: {', '.join(PHASES)}")
        t = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self._current[name] += time.perf_counter() - t

    def end_step(self, images: int, prompts: int) -> dict[str, float]:
        """Close the step; returns its ``step_s``, phase seconds, ``images_per_s`` and ``prompts_per_s``."""
        synchronize(self.device)
        total = time.perf_counter() - self._t0
        rec = {"step_s": total, **{f"{k}_s": v for k, v in self._current.items()},
               "images_per_s": images / total if total > 0 else 0.0, "prompts_per_s": prompts / total if total > 0 else 0.0}
        self.records.append({**rec, "images": images, "prompts": prompts})
        return {k: round(v, 4) for k, v in rec.items()}

    def summary(self, world: int = 1) -> dict:
        """Medians over the run's steps after the first (all steps if there is only one); images/s and
        prompts/s of this process and, multiplied by ``world``, of all processes."""
        recs = self.records[1:] or self.records
        if not recs:
            return {"steps_timed": 0}
        med = {k: statistics.median(r[k] for r in recs) for k in ("step_s", *(f"{p}_s" for p in PHASES))}
        total_s = sum(r["step_s"] for r in recs)
        images = sum(r["images"] for r in recs)
        prompts = sum(r["prompts"] for r in recs)
        return {"steps_timed": len(recs), **{f"median_{k}": round(v, 4) for k, v in med.items()},
                "images_per_s": round(images / total_s, 3), "prompts_per_s": round(prompts / total_s, 3),
                "images_per_s_all_ranks": round(world * images / total_s, 3)}
