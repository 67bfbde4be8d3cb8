"""Fake-quant layers: Linear, Conv2d, ConvTranspose2d and the two-operand MatMul.

Each layer keeps the float weights and its scales as buffers (`w_scale` per output channel,
`a_scale` per tensor; `b_scale` for the second matmul operand). With `quant_enabled = False` a
layer is exactly its float counterpart (used for calibration capture and for sensitivity
measurements, where one group at a time is switched on). `a_kind` is "uniform" or a twin-uniform
kind ("twin_gelu" for inputs that come from a GELU, "twin_softmax" for attention probabilities).
`act_quant = False` leaves a layer's (first) input activation float while its weight stays quantized:
the fake-quant model of an export whose format has no int8 form of that activation (twin-uniform).
`act_dynamic = True` quantizes that input per row at run time instead (`fake_quant_rows`, no scale of
its own): the fake-quant model of an export that computes it with dynamically quantized int8 kernels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .quantizer import channel_view, fake_quant, fake_quant_rows
from .twin_uniform import twin_quant

ACT_KINDS = ("uniform", "twin_gelu", "twin_softmax")


class QuantBase(nn.Module):
    """Shared state of the fake-quant layers."""

    kind = "base"
    act_quant = True  # False: the input activation stays float (weights / B operand still quantized)
    act_dynamic = False  # True: the input activation is quantized per row at run time (its scale unused)
    weight_axis = 0  # axis of the weight that indexes output channels
    out_channel_dim = 1  # axis of the output that indexes output channels

    def _init_quant(self, w_bits: int, a_bits: int, a_kind: str) -> None:
        if a_kind not in ACT_KINDS:
            raise ValueError(f"a_kind must be one of {ACT_KINDS}, got {a_kind!r}")
        self.w_bits, self.a_bits, self.a_kind = int(w_bits), int(a_bits), a_kind
        self.quant_enabled = False
        self.register_buffer("a_scale", torch.tensor(0.0))

    @property
    def calibrated(self) -> bool:
        """True once scales have been set (a positive activation scale)."""
        return bool(self.a_scale > 0)

    def quant_act(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """Fake-quantize an input activation with this layer's activation quantizer (as is if not `act_quant`)."""
        if not self.act_quant:
            return x
        if self.act_dynamic:
            return fake_quant_rows(x, self.a_bits)
        s = self.a_scale if scale is None else scale
        if self.a_kind == "uniform":
            return fake_quant(x, s, self.a_bits)
        return twin_quant(self.a_kind, x, s, self.a_bits)

    def quant_weight(self, scale: torch.Tensor | None = None) -> torch.Tensor:
        """Fake-quantized weight with per-channel scales."""
        s = self.w_scale if scale is None else scale
        return fake_quant(self.weight, channel_view(s, self.weight.dim(), self.weight_axis), self.w_bits)

    def compute(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The layer's float operation on given input and weight."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quant forward when `quant_enabled`, else the exact float op."""
        if self.quant_enabled:
            return self.compute(self.quant_act(x), self.quant_weight())
        return self.compute(x, self.weight)

    def description(self) -> dict:
        """JSON-friendly description (no tensors)."""
        return {"kind": self.kind, "w_bits": self.w_bits, "a_bits": self.a_bits, "a_kind": self.a_kind,
                "weight_axis": self.weight_axis, "quant_enabled": bool(self.quant_enabled)}


def _take_weights(dst: QuantBase, src: nn.Module) -> None:
    dst.weight = nn.Parameter(src.weight.detach().clone(), requires_grad=False)
    bias = getattr(src, "bias", None)
    dst.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
    n_out = dst.weight.shape[dst.weight_axis]
    dst.register_buffer("w_scale", torch.zeros(n_out))


class QuantLinear(QuantBase):
    """Fake-quant `nn.Linear`."""

    kind = "linear"
    weight_axis = 0
    out_channel_dim = -1

    def __init__(self, src: nn.Linear, w_bits: int = 8, a_bits: int = 8, a_kind: str = "uniform") -> None:
        super().__init__()
        self.in_features, self.out_features = src.in_features, src.out_features
        _take_weights(self, src)
        self._init_quant(w_bits, a_bits, a_kind)

    def compute(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """y = x W^T + b."""
        return F.linear(x, w, self.bias)


class QuantConv2d(QuantBase):
    """Fake-quant `nn.Conv2d` (BatchNorm already folded in by the caller if there was one)."""

    kind = "conv2d"
    weight_axis = 0

    def __init__(self, src: nn.Conv2d, w_bits: int = 8, a_bits: int = 8, a_kind: str = "uniform") -> None:
        super().__init__()
        self.stride, self.padding, self.dilation, self.groups = src.stride, src.padding, src.dilation, src.groups
        _take_weights(self, src)
        self._init_quant(w_bits, a_bits, a_kind)

    def compute(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """2-d convolution with the source layer's geometry."""
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class QuantConvTranspose2d(QuantBase):
    """Fake-quant `nn.ConvTranspose2d` (groups = 1; weight [in, out, kh, kw], channels on axis 1)."""

    kind = "conv_transpose2d"
    weight_axis = 1

    def __init__(self, src: nn.ConvTranspose2d, w_bits: int = 8, a_bits: int = 8, a_kind: str = "uniform") -> None:
        super().__init__()
        if src.groups != 1:
            raise ValueError("grouped ConvTranspose2d is not supported")
        self.stride, self.padding, self.dilation = src.stride, src.padding, src.dilation
        self.output_padding = src.output_padding
        _take_weights(self, src)
        self._init_quant(w_bits, a_bits, a_kind)

    def compute(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Transposed convolution with the source layer's geometry."""
        return F.conv_transpose2d(x, w, self.bias, self.stride, self.padding, self.output_padding, 1, self.dilation)


class QuantMatMul(QuantBase):
    """Fake-quant `a @ b` of two activations: per-tensor `a_scale` for A, `b_scale` for B."""

    kind = "matmul"

    def __init__(self, a_bits: int = 8, a_kind: str = "uniform") -> None:
        super().__init__()
        self._init_quant(a_bits, a_bits, a_kind)
        self.register_buffer("b_scale", torch.tensor(0.0))

    def quant_b(self, b: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """Fake-quantize the B operand (uniform, per tensor)."""
        return fake_quant(b, self.b_scale if scale is None else scale, self.a_bits)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """a @ b, with both operands fake-quantized when `quant_enabled`."""
        if self.quant_enabled:
            return self.quant_act(a) @ self.quant_b(b)
        return a @ b

    def description(self) -> dict:
        """JSON-friendly description (no weight for a matmul)."""
        d = super().description()
        d.update(weight_axis=None, w_bits=None)
        return d


QUANT_TYPES = (QuantLinear, QuantConv2d, QuantConvTranspose2d, QuantMatMul)
