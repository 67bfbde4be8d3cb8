"""Which CoreML weight consts a precision plan keeps float, by name and by value.

coremltools folds BatchNorm into the preceding conv, and the folded weight gets a generic name
(`const_N`), so a module-path rule (e.g. the stem, `image_encoder.patch_embed`) cannot see it by
name. Those weights are found by value instead: the plan's modules are folded here the same way
(conv weight x gamma / sqrt(var + eps)) and every const equal to one of them is kept float too.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from converters.precision import PrecisionPlan, keep_float_name


def _folded_conv_weight(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> np.ndarray:
    """The conv weight after BatchNorm folding, as the converter computes it."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var.detach() + bn.eps)
    return (conv.weight.detach() * scale.reshape(-1, 1, 1, 1)).numpy()


def kept_float_values(module: nn.Module, plan: PrecisionPlan) -> list[np.ndarray]:
    """Weight values of the modules the plan keeps float: their parameters and BN-folded conv weights."""
    out: list[np.ndarray] = []
    for name, mod in module.named_modules():
        if keep_float_name(plan, name):
            out += [p.detach().numpy() for p in mod.parameters(recurse=False) if p.dim() > 1]
        children = list(mod.named_children())
        for (n1, a), (_, b) in zip(children, children[1:]):
            if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) and keep_float_name(plan, f"{name}.{n1}"):
                out.append(_folded_conv_weight(a, b))
    return out


def const_values(mlmodel) -> dict[str, np.ndarray]:
    """name -> value of every tensor const op of an mlprogram (before any compression)."""
    out = {}
    for f in mlmodel._mil_program.functions.values():
        for op in f.operations:
            val = getattr(op.outputs[0], "val", None) if op.op_type == "const" else None
            if isinstance(val, np.ndarray) and val.ndim > 1:
                out[op.name] = val
    return out


def consts_matching_values(consts: dict[str, np.ndarray], values: list[np.ndarray],
                           rtol: float = 1e-5, atol: float = 1e-7) -> list[str]:
    """Names of consts equal (within float tolerance) to one of `values` of the same shape."""
    by_shape: dict[tuple, list[np.ndarray]] = {}
    for v in values:
        by_shape.setdefault(tuple(v.shape), []).append(v)
    return [name for name, c in consts.items()
            if any(np.allclose(c, v, rtol=rtol, atol=atol) for v in by_shape.get(tuple(c.shape), []))]


def coreml_keep_float_consts(module: nn.Module, mlmodel, plan: PrecisionPlan) -> list[str]:
    """Weight consts of `mlmodel` (converted from `module`) that `plan` keeps float."""
    consts = const_values(mlmodel)
    by_name = [n for n in consts if keep_float_name(plan, n)]
    by_value = consts_matching_values({n: c for n, c in consts.items() if n not in by_name},
                                      kept_float_values(module, plan))
    return by_name + by_value
