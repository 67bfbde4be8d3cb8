"""ExecuTorch mixed packages from a measured plan: per layer float, dynamic int8 (Linear inputs quantized
per row at run time) or static int8 (the recipe's searched input scale), lowered to XNNPACK's int8 kernels.

The int8 layers' weights are first snapped to the recipe's grid (`converters.w8a8.snapped_copy`): the
XNNPACK quantizer's per-channel max-based weight scales are then the recipe's. A static layer's int8
output range is observed on the calibration images (XNNPACK requantizes its outputs), which the plan's
fake-quant model does not model; the package is gated against that model with the target's
`fake_quant_thresholds`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from converters.backends.executorch.export import calibration_images, executorch_models, write_programs
from converters.backends.executorch.quantize import LayerModes, in_part
from converters.mixed_modes import split_from_modes
from converters.precision import PrecisionPlan
from converters.spec import ExportSpec
from converters.w8a8 import FLOAT, W8_ADYNAMIC, W8A8, snapped_copy

NOT_IN_PROGRAM = "not run by the exported program (no Linear/Conv2d op of this layer in its graph)"


def export_mixed(q: torch.nn.Module, spec: ExportSpec, out_dir: Path, plan: PrecisionPlan, work: Path,
                 progress: Callable[[str], None] | None = None, calibration=None) -> tuple[dict, dict]:  # noqa: ANN001
    """Write the mixed ExecuTorch files of `plan` (its `layer_modes`); returns (manifest `models`, layer split)."""
    from tinysam.quant.qmodel import quant_layers

    say = progress or (lambda msg: None)
    layers = split_from_modes(q, plan.layer_modes)
    static, dynamic = layers[W8A8], layers[W8_ADYNAMIC]
    unsupported = [n for n in layers if n not in (W8A8, W8_ADYNAMIC, FLOAT) and layers[n]]
    if unsupported:
        raise ValueError(f"executorch mixed packages run layers float, dynamic_int8 or static_int8; the plan "
                         f"asks for {', '.join(unsupported)}")
    scales = {n: float(m.a_scale) for n, m in quant_layers(q).items() if n in static}
    kept = [n for names in layers[FLOAT].values() for n in names]
    snapped = snapped_copy(q, static + dynamic)

    def modes_of(part: str, module: nn.Module) -> tuple[LayerModes, list[str]]:  # noqa: ARG001
        return (LayerModes({n: scales[n] for n in static if in_part(n, part)},
                           frozenset(n for n in dynamic if in_part(n, part))),
                [n for n in kept if in_part(n, part)])

    scopes = write_programs(snapped, spec, out_dir, modes_of, calibration_images(snapped, calibration), say)
    done = {n for s in scopes.values() for n in s.int8}
    missing = [n for n in static + dynamic if n not in done]
    layers[W8A8], layers[W8_ADYNAMIC] = [n for n in static if n in done], [n for n in dynamic if n in done]
    if missing:
        layers[FLOAT][NOT_IN_PROGRAM] = missing
    return executorch_models(spec, scopes), layers
