"""CoreML mixed packages from a measured plan: static int8 activations (quantize/dequantize ops, iOS 17+)
on the plan's static layers, int8 weights (constexpr dequantize) on its int8-weight layers, float elsewhere.
CoreML cannot run here, so the plan's speed side is the MAC share of its int8 layers, not a measurement."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from converters.backends.coreml.export import export_coreml
from converters.backends.coreml.w8a8 import torch_quant_ops
from converters.mixed_modes import split_from_modes
from converters.precision import PrecisionPlan
from converters.spec import ExportSpec
from converters.w8a8 import package_reference


def export_mixed(q: torch.nn.Module, spec: ExportSpec, out_dir: Path, plan: PrecisionPlan, work: Path,
                 progress: Callable[[str], None] | None = None, calibration=None) -> tuple[dict, dict]:  # noqa: ARG001
    """Write the mixed CoreML files of `plan` (its `layer_modes`); returns (manifest `models`, layer split)."""
    layers = split_from_modes(q, plan.layer_modes)
    view = torch_quant_ops(package_reference(q, layers))
    return export_coreml(view, spec, out_dir, plan, work, progress), layers
