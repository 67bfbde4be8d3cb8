"""A block of code on `n` torch intra-op threads, the previous count restored after it: for fixtures whose
results depend on the float summation order, or that stall under OpenMP oversubscription on 2 shared cores."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block on `n` intra-op threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
