"""Uniform symmetric fake quantization (the Q-TinySAM recipe's basic quantizer).

x_q = clip(round(x / s), -2^(b-1), 2^(b-1) - 1) * s. Weights get one scale per output channel,
activations one scale per tensor. Bit widths are written "w8a8", "w4a4", "w6a6", ... (WnAm).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

_BITS_RE = re.compile(r"^w(\d+)a(\d+)$")


class QuantConfigError(ValueError):
    """A quantization setting is invalid."""


@dataclass(frozen=True)
class BitSpec:
    """Weight and activation bit widths."""

    w_bits: int = 8
    a_bits: int = 8

    @property
    def name(self) -> str:
        """Canonical "wNaM" spelling."""
        return f"w{self.w_bits}a{self.a_bits}"


def parse_bits(text: str) -> BitSpec:
    """Parse "w8a8" / "W4A4" into a `BitSpec` (2..16 bits each)."""
    m = _BITS_RE.match(str(text).strip().lower())
    if not m:
        raise QuantConfigError(f"bits must look like 'w8a8' (WnAm), got {text!r}")
    w, a = int(m.group(1)), int(m.group(2))
    if not (2 <= w <= 16 and 2 <= a <= 16):
        raise QuantConfigError(f"bit widths must be between 2 and 16, got w{w}a{a}")
    return BitSpec(w, a)


def qrange(bits: int) -> tuple[int, int]:
    """Signed integer range (qmin, qmax) of a `bits`-bit symmetric quantizer."""
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def fake_quant(x: torch.Tensor, scale: torch.Tensor | float, bits: int) -> torch.Tensor:
    """Quantize-dequantize `x` with (broadcastable) `scale` on a signed `bits`-bit grid."""
    qmin, qmax = qrange(bits)
    scale = torch.as_tensor(scale, dtype=x.dtype, device=x.device).clamp_min(1e-12)
    return torch.clamp(torch.round(x / scale), qmin, qmax) * scale


def quantize_int(x: torch.Tensor, scale: torch.Tensor | float, bits: int) -> torch.Tensor:
    """Integer codes (int32) of `x` on the same grid as `fake_quant`."""
    qmin, qmax = qrange(bits)
    scale = torch.as_tensor(scale, dtype=x.dtype, device=x.device).clamp_min(1e-12)
    return torch.clamp(torch.round(x / scale), qmin, qmax).to(torch.int32)


def fake_quant_rows(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Quantize-dequantize each row of `x` (its last axis) on its own asymmetric `bits`-bit grid.

    The run-time ("dynamic") quantization of an int8 matmul input, as XNNPACK's dynamically quantized
    fully-connected kernels do it: per row, the range [min(x, 0), max(x, 0)] over 2^b - 1 steps, with
    the zero point rounded so that 0 is exact. A skewed input (e.g. after GELU: -0.17 to several units)
    keeps its whole range, which one symmetric per-tensor scale cannot.
    """
    qmin, qmax = qrange(bits)
    lo = x.detach().amin(dim=-1, keepdim=True).clamp_max(0)
    hi = x.detach().amax(dim=-1, keepdim=True).clamp_min(0)
    scale = ((hi - lo) / (qmax - qmin)).clamp_min(1e-12)
    zero = torch.clamp(torch.round(qmin - lo / scale), qmin, qmax)
    return (torch.clamp(torch.round(x / scale) + zero, qmin, qmax) - zero) * scale


def max_scale(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-tensor max-based scale: max|x| / (2^(b-1) - 1) (0-d tensor)."""
    return (x.detach().abs().amax().float() / qrange(bits)[1]).clamp_min(1e-8)


def max_scale_per_channel(w: torch.Tensor, bits: int, axis: int = 0) -> torch.Tensor:
    """Per-channel max-based scale along `axis` (1-d, one entry per channel)."""
    dims = [d for d in range(w.dim()) if d != axis]
    amax = w.detach().abs().amax(dim=dims) if dims else w.detach().abs()
    return (amax.float() / qrange(bits)[1]).clamp_min(1e-8)


def channel_view(scale: torch.Tensor, ndim: int, axis: int) -> torch.Tensor:
    """Reshape a 1-d per-channel scale so it broadcasts against an `ndim` tensor along `axis`."""
    shape = [1] * ndim
    shape[axis] = -1
    return scale.reshape(shape)


def candidate_ratios(n: int = 100, low: float = 0.01, high: float = 1.2) -> torch.Tensor:
    """Grid-search multipliers of the max-based scale: `n` points evenly spaced in [low, high]."""
    if n < 1 or not (0 < low <= high):
        raise QuantConfigError(f"need n >= 1 and 0 < low <= high, got n={n}, low={low}, high={high}")
    return torch.linspace(low, high, n)
