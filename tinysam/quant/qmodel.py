"""Wrap a float SAM-family model into a fake-quant model.

`quantize_model` deep-copies the model, folds every Conv2d->BatchNorm2d pair (as the exported
graphs do), swaps Linear/Conv2d/ConvTranspose2d for fake-quant layers and gives TinyViT's window
attention and the two-way transformer's attention two `QuantMatMul`s each (`matmul_qk` for q @ k^T,
`matmul_av` for softmax @ v). Inputs of `fc2`/`lin2` after a GELU get the twin-uniform post-GELU
quantizer, attention probabilities the twin-uniform post-softmax quantizer.

Kept float by construction: the decoder's final hypernetwork product (`hyper_in @ upscaled`), the
relative-position/bias adds, LayerNorm and softmax themselves.
"""

from __future__ import annotations

import copy
import re

import torch
from torch import nn

from ..modeling import tiny_vit, transformer
from .qlayers import QUANT_TYPES, QuantBase, QuantConv2d, QuantConvTranspose2d, QuantLinear, QuantMatMul
from .quantizer import BitSpec, parse_bits


class QTinyViTAttention(tiny_vit.Attention):
    """TinyViT window attention whose two activation products are `QuantMatMul`s."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Windows [B', N, C] in, [B', N, C] out."""
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3 * self.key_dim)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.key_dim], dim=3)
        q, k, v = q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)
        attn = self.matmul_qk(q, k.transpose(-2, -1)) * self.scale + self.bias()
        attn = attn.softmax(dim=-1)
        out = self.matmul_av(attn, v).transpose(1, 2).reshape(b, n, self.dh)
        return self.proj(out)


class QTwoWayAttention(transformer.Attention):
    """Two-way transformer attention whose two activation products are `QuantMatMul`s."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_bias: torch.Tensor | None = None) -> torch.Tensor:
        """q [B, Nq, C], k/v [B, Nk, C], key_bias [B, Nk] or None -> [B, Nq, C]."""
        q = self._separate_heads(self.q_proj(q))
        k = self._separate_heads(self.k_proj(k))
        v = self._separate_heads(self.v_proj(v))
        attn = self.matmul_qk(q, k.permute(0, 1, 3, 2)) / self.logit_divisor
        if key_bias is not None:
            attn = attn + key_bias[:, None, None, :]
        attn = torch.softmax(attn, dim=-1)
        return self.out_proj(self._recombine_heads(self.matmul_av(attn, v)))


_ATTENTION_SWAPS = ((tiny_vit.Attention, QTinyViTAttention), (transformer.Attention, QTwoWayAttention))


def fold_batchnorms(model: nn.Module) -> int:
    """Fold each Conv2d immediately followed by BatchNorm2d (in a Sequential) into the conv; count."""
    n = 0
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                _fold_pair(conv, bn)
                seq._modules[b] = nn.Identity()
                n += 1
    return n


@torch.no_grad()
def _fold_pair(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
    factor = gamma / std
    conv.weight.mul_(factor.view(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(std)
    new_bias = beta + (bias - bn.running_mean) * factor
    conv.bias = nn.Parameter(new_bias)


def _post_gelu(parent: nn.Module, child_name: str) -> bool:
    """True for the second linear of an MLP whose activation is GELU (fc2 / lin2)."""
    return child_name in ("fc2", "lin2") and isinstance(getattr(parent, "act", None), nn.GELU)


def _swap_layers(module: nn.Module, bits: BitSpec) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, QUANT_TYPES):
            continue
        if isinstance(child, nn.Linear):
            kind = "twin_gelu" if _post_gelu(module, name) else "uniform"
            setattr(module, name, QuantLinear(child, bits.w_bits, bits.a_bits, kind))
        elif isinstance(child, nn.Conv2d):
            setattr(module, name, QuantConv2d(child, bits.w_bits, bits.a_bits))
        elif isinstance(child, nn.ConvTranspose2d):
            setattr(module, name, QuantConvTranspose2d(child, bits.w_bits, bits.a_bits))
        else:
            _swap_layers(child, bits)


def _swap_attention(model: nn.Module, bits: BitSpec) -> None:
    for m in model.modules():
        for base, quant in _ATTENTION_SWAPS:
            if type(m) is base:
                m.__class__ = quant
                m.add_module("matmul_qk", QuantMatMul(bits.a_bits, "uniform"))
                m.add_module("matmul_av", QuantMatMul(bits.a_bits, "twin_softmax"))


def quantize_model(model: nn.Module, bits: str | BitSpec = "w8a8", twin_uniform: bool = True) -> nn.Module:
    """Deep copy of `model` with BN folded and fake-quant layers in place (quantization still off).

    Scales are all zero until calibrated (`tinysam.quant.search.calibrate_model`); uncalibrated
    layers always run float. `twin_uniform=False` uses plain uniform quantizers everywhere.
    """
    spec = parse_bits(bits) if isinstance(bits, str) else bits
    q = copy.deepcopy(model).eval()
    fold_batchnorms(q)
    _swap_layers(q, spec)
    _swap_attention(q, spec)
    if not twin_uniform:
        for layer in quant_layers(q).values():
            layer.a_kind = "uniform"
    q.quant_bits = spec.name
    for p in q.parameters():
        p.requires_grad_(False)
    return q


def quant_layers(model: nn.Module) -> dict[str, QuantBase]:
    """All fake-quant layers by module path, in module order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, QuantBase)}


def set_quant(model: nn.Module, enabled: bool, names: list[str] | None = None) -> None:
    """Switch fake quantization on/off for `names` (default all); uncalibrated layers stay float."""
    layers = quant_layers(model)
    for n in names if names is not None else list(layers):
        if n not in layers:
            raise ValueError(f"no quantized layer named {n!r}")
        layers[n].quant_enabled = bool(enabled) and layers[n].calibrated


_GROUP_STOPS = {
    "patch_embed", "neck", "downsample", "attn", "mlp", "local_conv", "self_attn",
    "cross_attn_token_to_image", "cross_attn_image_to_token", "final_attn_token_to_image",
    "output_upscaling", "output_hypernetworks_mlps", "iou_prediction_head", "mask_downscaling",
}


def layer_group(name: str) -> str:
    """Sensitivity group of a layer path: its attention / MLP / block / stem / neck / head."""
    comps = name.split(".")
    for i, c in enumerate(comps[:-1]):
        if c in _GROUP_STOPS:
            return ".".join(comps[: i + 1])
        if c == "blocks" and i + 2 < len(comps) and comps[i + 2] not in _GROUP_STOPS:
            return ".".join(comps[: i + 2])
    return ".".join(comps[:-1]) or name


def group_regex(group: str) -> str:
    """Plan rule regex selecting exactly the layers of `group` (dots escaped, prefix-anchored)."""
    return re.escape(group) + r"(\.|$)"


def layer_groups(model: nn.Module) -> dict[str, list[str]]:
    """Calibrated layer names grouped by `layer_group`, in module order."""
    groups: dict[str, list[str]] = {}
    for n, m in quant_layers(model).items():
        if m.calibrated:
            groups.setdefault(layer_group(n), []).append(n)
    return groups
