"""int8 for ExecuTorch: PT2E quantization with the XNNPACK quantizer, scoped to Linear and Conv2d.

Weights are int8 per output channel (symmetric, max-based scales from the quantizer's observers).
Linear inputs are quantized per row at run time (dynamic int8); the encoder's Conv2d inputs are
static int8 with ranges calibrated on the calibration images (the bundled photos, or the first images
of `--calibration`, as the other targets). The decoder quantizes only its Linear layers (dynamic; it
has no calibrated prompts of its own).

Scope: the quantizer is given module types, not the whole model. Measured at 128 px: the whole-model
static configuration quantizes TinyViT's window padding, and XNNPACK then refuses the model at load
("Failed to create StaticConstantPad node ... xnn_status_invalid_parameter"); the whole-model dynamic
one fails to lower ("required rank 4 tensor to use channels_last format").

The precision plan's keep-float rules (fixed or measured mixed plans) are a node filter: a Linear/Conv2d
whose module path matches a rule is left float. The PTQ recipe's searched scales are not used: the
XNNPACK quantizer takes observer constructors (`QuantizationSpec`), not given scales.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from converters.precision import rules_for_names

WRAPPER_PREFIX = "model."  # the export wrappers hold the SAM model as `.model`
QUANT_TYPES = (nn.Linear, nn.Conv2d)


@dataclass
class QuantScope:
    """Which Linear/Conv2d layers of one part (module paths without the wrapper prefix) are int8."""

    int8: list[str] = field(default_factory=list)
    float: list[str] = field(default_factory=list)


def _strip(path: str) -> str:
    path = path[len("L['self'].") :] if path.startswith("L['self'].") else path
    return path[len(WRAPPER_PREFIX) :] if path.startswith(WRAPPER_PREFIX) else path


ENCODER_PREFIX = "image_encoder."  # the encoder program runs these modules; the decoder programs the others


def scope(module: nn.Module, plan: dict, types: tuple[type, ...],
          part: str = "encoder") -> tuple[QuantScope, Callable[[str], bool]]:
    """The layers of `types` that the `part` program runs, split by the plan's keep-float rules, and the
    float test by module path (the export wrappers hold the whole model; each part runs only its modules)."""
    names = [_strip(n) for n, _ in module.named_modules() if n]
    rules = rules_for_names(plan, names)

    def keep_float(path: str) -> bool:
        return any(rx.search(_strip(path)) for rx in rules)

    out = QuantScope()
    for name, mod in module.named_modules():
        path = _strip(name)
        if isinstance(mod, types) and path.startswith(ENCODER_PREFIX) == (part == "encoder"):
            (out.float if keep_float(name) else out.int8).append(path)
    return out, keep_float


def _node_filter(keep_float: Callable[[str], bool]) -> Callable:
    """PT2E node filter: False for nodes inside a module the plan keeps float."""

    def allowed(node) -> bool:  # noqa: ANN001
        stack = node.meta.get("nn_module_stack") or {}
        return not any(keep_float(path) for path, _ in stack.values())

    return allowed


def quantizer(part: str, keep_float: Callable[[str], bool]):
    """XNNPACKQuantizer for the `encoder` (Linear dynamic, Conv2d static) or the `decoder` (Linear dynamic)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    qz = XNNPACKQuantizer()
    qz.set_module_type(nn.Linear, get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True))
    if part == "encoder":
        qz.set_module_type(nn.Conv2d, get_symmetric_quantization_config(is_per_channel=True))
    qz.set_filter_function(_node_filter(keep_float))
    return qz


def quantized_program(module: nn.Module, args: tuple, part: str, plan: dict,
                      calibration: list[tuple]) -> tuple[torch.export.ExportedProgram, QuantScope]:
    """`module` exported, quantized per `part`/`plan` (calibrated on `calibration` argument tuples) and
    exported again, ready for lowering."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    types = QUANT_TYPES if part == "encoder" else (nn.Linear,)
    layers, keep_float = scope(module, plan, types, part)
    with torch.no_grad():
        graph = torch.export.export(module.eval(), args).module()
        prepared = prepare_pt2e(graph, quantizer(part, keep_float))
        for sample in calibration or [args]:
            prepared(*sample)
        converted = convert_pt2e(prepared)
        return torch.export.export(converted, args), layers
