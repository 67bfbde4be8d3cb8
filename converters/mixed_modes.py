"""Per-layer compute modes of a mixed plan, in the recipe's terms.

A mixed plan gives every layer group one of `GROUP_MODES` (`converters.backends.base`); a group at
mode m runs each of its layers at the fastest mode up to m that the target runs for that layer
(`MixedSupport.modes`: e.g. LiteRT's post-GELU fc2 has no static int8 form, so an MLP group at
"static_int8" runs fc1 static and fc2 dynamic). The modes map onto the W8A8 layer split
(`converters.w8a8.layer_split` form), so the parity reference of a mixed package is the recipe's
fake-quant model of exactly those layers (`converters.w8a8.package_reference`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from converters.backends.base import GROUP_MODES, MixedSupport
from converters.w8a8 import FLOAT, INT8_CATEGORIES, MATMUL_BOTH, W8_ADYNAMIC, W8_AFLOAT, W8A8

CATEGORY = {"int8_weights": W8_AFLOAT, "dynamic_int8": W8_ADYNAMIC, "static_int8": W8A8}
FLOAT_REASON = "float in the measured plan"


@dataclass(frozen=True)
class GroupOptions:
    """One layer group: its layers and, per layer, the modes the target runs (slowest first)."""

    name: str
    layers: tuple[str, ...]
    layer_modes: tuple[tuple[str, ...], ...]

    @property
    def modes(self) -> tuple[str, ...]:
        """Group modes (the union of its layers' modes, in `GROUP_MODES` order)."""
        have = {m for ms in self.layer_modes for m in ms}
        return tuple(m for m in GROUP_MODES if m in have)

    def resolve(self, mode: str) -> dict[str, str]:
        """Layer -> mode when the group runs at `mode` (each layer: its fastest mode up to `mode`)."""
        rank = GROUP_MODES.index(mode)
        return {n: max((m for m in ms if GROUP_MODES.index(m) <= rank), key=GROUP_MODES.index)
                for n, ms in zip(self.layers, self.layer_modes)}


def group_options(q: torch.nn.Module, support: MixedSupport) -> list[GroupOptions]:
    """The calibrated layer groups of the recipe model `q` and the modes `support` runs for them."""
    from tinysam.quant.qmodel import layer_groups, quant_layers

    layers = quant_layers(q)
    out = []
    for g, names in layer_groups(q).items():
        modes = tuple(support.modes(layers[n].kind, n, layers[n].a_kind != "uniform") for n in names)
        out.append(GroupOptions(g, tuple(names), modes))
    return out


def layer_modes(groups: list[GroupOptions], choice: dict[str, str]) -> dict[str, str]:
    """Layer -> mode for a group -> mode choice (every group must be given)."""
    out: dict[str, str] = {}
    for g in groups:
        if g.name not in choice:
            raise ValueError(f"mixed plan gives no mode for group {g.name!r}")
        out.update(g.resolve(choice[g.name]))
    return out


def split_from_modes(q: torch.nn.Module, modes: dict[str, str]) -> dict:
    """The W8A8 layer split (`converters.w8a8.layer_split` form) of layer -> mode `modes`."""
    from tinysam.quant.qmodel import quant_layers

    out: dict = {c: [] for c in INT8_CATEGORIES}
    out[FLOAT] = {}
    known = quant_layers(q)
    for name, mode in modes.items():
        if name not in known:
            raise ValueError(f"mixed plan names layer {name!r}, which the model does not have")
        if mode not in GROUP_MODES:
            raise ValueError(f"unknown mode {mode!r} for {name}; choose one of: {', '.join(GROUP_MODES)}")
        if mode == "float":
            out[FLOAT].setdefault(FLOAT_REASON, []).append(name)
        elif known[name].kind == "matmul":
            out[MATMUL_BOTH].append(name)
        else:
            out[CATEGORY[mode]].append(name)
    return out


@torch.no_grad()
def set_weight_scales(q: torch.nn.Module, modes: dict[str, str]) -> None:
    """Weight scales of `q` for layer -> mode `modes`: "int8_weights" layers get max-based per-channel scales
    (max |w| / 127, no clipping: what weight-only int8 exporters compute, and measured better for layers
    whose input stays float), every other layer the recipe's searched scales (kept on first use)."""
    from tinysam.quant.qmodel import quant_layers

    layers = {n: m for n, m in quant_layers(q).items() if hasattr(m, "w_scale")}
    if not hasattr(q, "recipe_w_scales"):
        q.recipe_w_scales = {n: m.w_scale.clone() for n, m in layers.items()}
    for n, m in layers.items():
        if modes.get(n) == "int8_weights":
            dims = [d for d in range(m.weight.dim()) if d != m.weight_axis]
            m.w_scale.copy_(m.weight.abs().amax(dim=dims).clamp_min(1e-12) / (2 ** (m.w_bits - 1) - 1))
        else:
            m.w_scale.copy_(q.recipe_w_scales[n])


def apply_modes(q: torch.nn.Module, modes: dict[str, str]) -> None:
    """Configure the fake-quant model `q` in place to compute layer -> mode `modes` (others float), weight
    scales included (`set_weight_scales`)."""
    from tinysam.quant.qmodel import quant_layers

    set_weight_scales(q, modes)
    for name, layer in quant_layers(q).items():
        mode = modes.get(name, "float")
        layer.quant_enabled = mode != "float" and layer.calibrated
        layer.act_quant = mode in ("dynamic_int8", "static_int8")
        layer.act_dynamic = mode == "dynamic_int8"
