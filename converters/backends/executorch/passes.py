"""Model passes applied before an int8/mixed ExecuTorch export.

`half_attention_biases`: TinyViT's window attention adds a per-head bias table gathered to [heads, N, N]
(`tiny_vit.Attention.bias_cache`). ExecuTorch stores these caches as float32 constants: 7.7 MB for TinyViT-5M
at any input size, more than the int8 weights of the whole encoder (5.7 MB). In quantized packages they are
stored float16 and cast to float32 where they are added (a change of at most 2^-11 relative on each bias,
far inside the int8 layers' rounding); fp32 packages keep them float32.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import torch
from torch import nn


def _half_bias(self: nn.Module) -> torch.Tensor:
    return self.bias_half.float()


@contextlib.contextmanager
def half_attention_biases(model: nn.Module) -> Iterator[int]:
    """Within the block, every TinyViT attention of `model` adds its bias cache from a float16 copy; yields the
    bytes saved in the exported program. `model` is restored on exit."""
    from tinysam.modeling.tiny_vit import Attention

    mods = [m for m in model.modules() if isinstance(m, Attention)]
    for m in mods:
        m.register_buffer("bias_half", m.bias_cache.detach().half(), persistent=False)
        m.bias = types.MethodType(_half_bias, m)
    try:
        yield sum(m.bias_cache.numel() * 2 for m in mods)
    finally:
        for m in mods:
            del m.bias
            del m._buffers["bias_half"]  # noqa: SLF001 - the buffer registered above
