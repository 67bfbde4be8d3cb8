"""Which LiteRT ops compute which of our layers, found by their weight values.

litert-quantizer selects ops by a regex over their scope (the op's output tensor names joined by ";",
plus ";"). The converter names tensors after the module code that produced a fused result and fuses
several module paths into one name: a decoder projection's output reads
`.../self_attn/.../Linear_q_proj;;.../cross_attn_token_to_image/.../Linear_k_proj;` (the positional
encoding added in front), an MLP's first weight is named after the ReLU folded behind it. A module-path
regex therefore selected a neighbour's op (a layer the plan kept float came out int8) or missed its own.

The weights decide first: a layer's ops are those whose constant weight holds exactly the layer's
values (the converted model's, in any layout: the sorted values are compared), or, for a Linear after a
LayerNorm whose affine the converter folded in, the layer's values with one factor per input column.
Every subgraph counts (the decoder's signatures share one weight buffer and have one op each). The op's
name picks only where several layers hold equal values (an untrained model's zero-initialized convs)
and for what is left, among the ops no value claimed. (The names alone are not enough: the decoder's
second MLP's first Linear is named after the first block's ReLU.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from converters.backends.litert.flatbuffer import builtin_code, tensor_name
from converters.backends.litert.names import LAYER_OPS


@dataclass(frozen=True)
class LayerOp:
    """One LiteRT op of a layer: its subgraph, its quantizer scope and its data input/output tensor names."""

    subgraph: int
    scope: str
    input: str
    output: str
    folded: bool = False  # the weight is the layer's times a per-input-column factor (a LayerNorm's affine)


def _sorted_weight(layer: torch.nn.Module) -> np.ndarray:
    return np.sort(layer.weight.detach().cpu().numpy().astype(np.float32).reshape(-1))


def layer_ops_by_weight(tflite_path: Path, model: torch.nn.Module, names: list[str]) -> dict[str, list[LayerOp]]:
    """Layer name -> its ops in `tflite_path`, for the layers `names` of `model` (the fake-quant model
    whose weights were converted into the file; layers without a matching op are left out).

    A Linear whose weights the converter scaled (a LayerNorm's affine folded in: TinyViT's qkv and fc1,
    the decoder's lin1 and some v_proj) matches when its values are the layer's with one factor per input
    column; what is left is matched by name among the ops of its weight size that nothing claimed."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fb

    from converters.backends.litert.export import module_lists
    from tinysam.quant.qmodel import quant_layers

    layers = quant_layers(model)
    lists = module_lists(model)
    by_size: dict[int, list[str]] = {}
    for n in names:
        by_size.setdefault(layers[n].weight.numel(), []).append(n)
    wanted: dict[str, np.ndarray] = {}
    codes = {getattr(schema.BuiltinOperator, k): k for k in LAYER_OPS}
    fm = fb.read_model(str(tflite_path))
    out: dict[str, list[LayerOp]] = {}
    unclaimed: list[tuple[int, LayerOp]] = []  # (weight size, op) of ops no layer's values matched
    for si, sg in enumerate(fm.subgraphs):
        for op in sg.operators:
            kind = codes.get(builtin_code(fm, op))
            if kind is None:
                continue
            w = sg.tensors[op.inputs[1]]  # TRANSPOSE_CONV too: (output_shape, weights, input, bias)
            data = fm.buffers[w.buffer].data
            if w.type != schema.TensorType.FLOAT32 or data is None or len(data) == 0:
                continue
            values = np.sort(np.frombuffer(np.asarray(data, np.uint8).tobytes(), "<f4"))
            same = []
            for n in by_size.get(values.size, []):
                if n not in wanted:
                    wanted[n] = _sorted_weight(layers[n])
                if np.array_equal(values, wanted[n]):
                    same.append(n)
            outs = [tensor_name(sg.tensors[i]) for i in op.outputs if i != -1]
            data_in = op.inputs[2] if kind == "TRANSPOSE_CONV" else op.inputs[0]
            ref = LayerOp(si, ";".join(outs) + ";", tensor_name(sg.tensors[data_in]), outs[0])
            if not same and kind == "FULLY_CONNECTED":  # a LayerNorm's affine folded in: W * gamma per input
                raw = np.frombuffer(np.asarray(data, np.uint8).tobytes(), "<f4").reshape(tuple(w.shape))
                same = [n for n in by_size.get(values.size, []) if _column_scaled(raw, layers[n].weight)]
                ref = LayerOp(ref.subgraph, ref.scope, ref.input, ref.output, folded=bool(same))
            n = _by_name(same, ref.scope, lists) if len(same) > 1 else (same[0] if same else None)
            if n is None:
                unclaimed.append((values.size, ref))
            else:
                out.setdefault(n, []).append(ref)
    claimed = set(out)
    for group_level in (False, True):  # the layer's own path first, then its group's (a folded name)
        left = []
        for size, ref in unclaimed:
            free = [m for m in by_size.get(size, []) if m not in claimed]
            n = _by_name(free, ref.scope, lists, group_level)
            if n is None:
                left.append((size, ref))
            else:
                out.setdefault(n, []).append(ref)
        claimed = set(out)
        unclaimed = left
    return out


def _column_scaled(folded: np.ndarray, weight: torch.Tensor) -> bool:
    """`folded` is `weight` [out, in] with each input column scaled by one factor (a LayerNorm's gamma
    folded into the Linear after it), within float32 rounding."""
    w = weight.detach().cpu().numpy().astype(np.float64)
    if w.shape != folded.shape or not np.abs(w).any():
        return False
    f = folded.astype(np.float64)
    g = (f * w).sum(0) / np.maximum((w * w).sum(0), 1e-300)
    return bool(np.abs(f - w * g).max() <= 1e-5 * max(np.abs(f).max(), 1e-12))


def _by_name(candidates: list[str], scope: str, module_lists: set[str], group_level: bool = False) -> str | None:
    """The most specific of `candidates` whose module path the op's scope carries, or None. With
    `group_level`, the path of the layer's group (`tinysam.quant.qmodel.layer_group`: an MLP's first
    Linear is named after the ReLU behind it) and only when one candidate of that group is left."""
    from converters.backends.litert.export import tflite_module_regex
    from tinysam.quant.qmodel import group_regex, layer_group

    path = layer_group if group_level else (lambda n: n)
    named = [n for n in candidates if re.search(tflite_module_regex(group_regex(path(n)), module_lists), scope)]
    if group_level:
        return named[0] if len(named) == 1 else None
    return max(named, key=len) if named else None


def scope_regex(ops: list[LayerOp]) -> str:
    """A litert-quantizer scope regex that selects exactly `ops`."""
    return "^(?:" + "|".join(re.escape(o.scope) for o in ops) + ")$"


def folded_layers(tflite_path: Path, model: torch.nn.Module, names: list[str]) -> list[str]:
    """The layers of `names` whose LiteRT weight the converter multiplied by a LayerNorm's gamma: LiteRT
    quantizes W * gamma per output channel on its own grid, so these cannot hold the recipe's int8 W."""
    found = layer_ops_by_weight(tflite_path, model, names)
    return [n for n in names if n in found and any(o.folded for o in found[n])]
