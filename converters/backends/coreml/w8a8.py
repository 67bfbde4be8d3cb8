"""CoreML W8A8: the recipe's model traced with torch's quantize/dequantize ops in place of its fake
quantization; coremltools 9.0 turns them into `quantize`/`dequantize` ops (activations) and
`constexpr_affine_dequantize` (weights) with exactly these scales."""

from __future__ import annotations

import copy
import types
from collections.abc import Callable
from pathlib import Path

import torch

from converters.backends.coreml.export import export_coreml
from converters.precision import PrecisionPlan
from converters.spec import ExportSpec
from converters.w8a8 import layer_split, package_reference


def _fq_act(layer, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:  # noqa: ANN001
    if not layer.act_quant:
        return x
    s = float(layer.a_scale if scale is None else scale)
    return torch.quantize_per_tensor(x, s, 0, torch.qint8).dequantize()


def _fq_b(layer, b: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:  # noqa: ANN001
    s = float(layer.b_scale if scale is None else scale)
    return torch.quantize_per_tensor(b, s, 0, torch.qint8).dequantize()


def _fq_weight(layer, scale: torch.Tensor | None = None) -> torch.Tensor:  # noqa: ANN001
    s = (layer.w_scale if scale is None else scale).double().clamp_min(1e-12)
    zeros = torch.zeros(s.numel(), dtype=torch.int64)
    return torch.quantize_per_channel(layer.weight, s, zeros, layer.weight_axis, torch.qint8).dequantize()


def torch_quant_ops(ref: torch.nn.Module) -> torch.nn.Module:
    """Copy of the fake-quant model `ref` whose enabled quantize steps are torch's quantize/dequantize ops.

    Same values as the fake quantization (symmetric int8, zero point 0); traced, coremltools converts
    them with the given scales.
    """
    from tinysam.quant.qmodel import quant_layers

    view = copy.deepcopy(ref).eval()
    for layer in quant_layers(view).values():
        if not layer.quant_enabled:
            continue
        layer.quant_act = types.MethodType(_fq_act, layer)
        if layer.kind == "matmul":
            layer.quant_b = types.MethodType(_fq_b, layer)
        else:
            layer.quant_weight = types.MethodType(_fq_weight, layer)
    return view


def export_w8a8(q: torch.nn.Module, spec: ExportSpec, out_dir: Path, plan: PrecisionPlan, work: Path,
                progress: Callable[[str], None] | None = None, calibration=None) -> tuple[dict, dict]:  # noqa: ARG001
    """Write the W8A8 CoreML files; returns (manifest `models` section, layer split)."""
    layers = layer_split(q, spec.target)
    view = torch_quant_ops(package_reference(q, layers))
    return export_coreml(view, spec, out_dir, plan, work, progress), layers
