"""Timing helpers shared by the benchmark suites: warm-up, repeated runs, medians."""

from __future__ import annotations

import time
from collections.abc import Callable


def median(values: list[float]) -> float:
    """Median of a non-empty list."""
    if not values:
        raise ValueError("median of an empty list")
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else 0.5 * (s[mid - 1] + s[mid])


def time_fn(fn: Callable[[], object], warmup: int, repeats: int) -> dict:
    """Warm up, then time `repeats` calls; median, min and every time in seconds."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": median(times), "min_s": min(times), "times_s": times, "warmup": warmup, "repeats": repeats}
