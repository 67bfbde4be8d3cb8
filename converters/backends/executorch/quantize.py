"""int8 for ExecuTorch: PT2E quantization of named Linear/Conv2d layers, lowered to XNNPACK's int8 kernels.

Each layer is either static int8 (int8 weights per output channel, an int8 input of one scale, an int8
output whose range is observed on the calibration images) or dynamic int8 (a Linear whose input XNNPACK
quantizes per row at run time), or stays float. `LayerModes` names them; `layer_quantizer` annotates
exactly those layers, so the package holds what its manifest says:
- the `int8` precision and fixed mixed plans: every Linear dynamic, the encoder's Conv2d static with
  observed input ranges, the decoder's Linears dynamic (it has no calibrated prompts); a plan's
  keep-float rules leave layers float (`fixed_modes`);
- measured mixed plans: the plan's static layers take the recipe's searched input scales, its dynamic
  layers run dynamic (`recipe_modes`; `converters.backends.executorch.mixed`).

Measured at 1024 px, 2 threads (ExecuTorch 1.5.1, x86): the XNNPACK quantizer's own module-type
configuration never quantized a Conv2d (its filter also tests the BatchNorm-fused weight, which belongs
to no module), and its annotation propagation quantizes TinyViT's window padding, which XNNPACK refuses
at load ("Failed to create StaticConstantPad node"). Here only the layers themselves are annotated.
Encoder medians at 1024 px, 2 threads, as the packages build them (`export.lower`, `passes`): fp32 324 ms,
every Linear dynamic 190 ms, every Linear/Conv2d static (the fc2s dynamic) 144 ms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from converters.precision import rules_for_names

WRAPPER_PREFIX = "model."  # the export wrappers hold the SAM model as `.model`
ENCODER_PREFIX = "image_encoder."  # the encoder program runs these modules; the decoder programs the others
QUANT_TYPES = (nn.Linear, nn.Conv2d)
_LINEAR = torch.ops.aten.linear.default
_CONV = torch.ops.aten.conv2d.default


@dataclass
class QuantScope:
    """Which Linear/Conv2d layers of one part (module paths without the wrapper prefix) are int8."""

    int8: list[str] = field(default_factory=list)
    float: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LayerModes:
    """The int8 layers of one program by module path: static (path -> the input scale, None = observed on
    the calibration data) and dynamic (Linears only)."""

    static: dict[str, float | None] = field(default_factory=dict)
    dynamic: frozenset[str] = frozenset()


def _strip(path: str) -> str:
    path = path[len("L['self'].") :] if path.startswith("L['self'].") else path
    return path[len(WRAPPER_PREFIX) :] if path.startswith(WRAPPER_PREFIX) else path


def in_part(path: str, part: str) -> bool:
    """True if the `part` program ("encoder" / "decoder") runs the layer at `path`."""
    return path.startswith(ENCODER_PREFIX) == (part == "encoder")


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
        if isinstance(mod, types) and in_part(path, part):
            (out.float if keep_float(name) else out.int8).append(path)
    return out, keep_float


def fixed_modes(module: nn.Module, plan: dict, part: str) -> tuple[LayerModes, QuantScope]:
    """The int8 precision's layers (fixed plans): Linear dynamic, the encoder's Conv2d static (observed)."""
    found, _ = scope(module, plan, QUANT_TYPES if part == "encoder" else (nn.Linear,), part)
    linear = {_strip(n) for n, m in module.named_modules() if isinstance(m, nn.Linear)}
    static = {p: None for p in found.int8 if p not in linear}
    return LayerModes(static, frozenset(p for p in found.int8 if p in linear)), found


def _layer_path(node) -> str | None:  # noqa: ANN001 - an fx Node
    stack = node.meta.get("nn_module_stack") or {}
    return _strip(list(stack.values())[-1][0]) if stack else None


def layer_quantizer(modes: LayerModes):  # noqa: ANN201 - a torchao Quantizer (imported lazily)
    """PT2E quantizer annotating exactly the Linear/Conv2d layers of `modes` for XNNPACK (no propagation
    through other ops). Its `annotated` holds the module paths it annotated, after `prepare_pt2e`."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantizer import (
        FixedQParamsQuantizationSpec,
        QuantizationAnnotation,
        Quantizer,
    )

    static_cfg = get_symmetric_quantization_config(is_per_channel=True)
    dynamic_cfg = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=True)

    def input_spec(scale: float | None):  # noqa: ANN202
        if scale is None:
            return static_cfg.input_activation
        return FixedQParamsQuantizationSpec(dtype=torch.int8, scale=float(scale), zero_point=0, quant_min=-128,
                                            quant_max=127, qscheme=torch.per_tensor_affine)

    class _Quantizer(Quantizer):
        annotated: set[str]

        def annotate(self, gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
            self.annotated = set()
            for node in gm.graph.nodes:
                if node.op != "call_function" or node.target not in (_LINEAR, _CONV):
                    continue
                path = _layer_path(node)
                if path in modes.static:
                    cfg, act, out = static_cfg, input_spec(modes.static[path]), static_cfg.output_activation
                elif path in modes.dynamic and node.target is _LINEAR:
                    cfg, act, out = dynamic_cfg, dynamic_cfg.input_activation, None
                else:
                    continue
                qmap = {node.args[0]: act, node.args[1]: cfg.weight}
                if len(node.args) > 2 and isinstance(node.args[2], torch.fx.Node) and cfg.bias is not None:
                    qmap[node.args[2]] = cfg.bias
                node.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map=qmap, output_qspec=out, _annotated=True)
                self.annotated.add(path)
            return gm

        def validate(self, gm: torch.fx.GraphModule) -> None:
            pass

    return _Quantizer()


def quantized_program(module: nn.Module, args: tuple, modes: LayerModes,
                      calibration: list[tuple]) -> tuple[torch.export.ExportedProgram, list[str]]:
    """`module` exported, its `modes` layers quantized (static ranges observed on `calibration` argument
    tuples) and exported again, ready for lowering; with the module paths that were quantized (a layer of
    `modes` the program does not run is not among them)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = layer_quantizer(modes)
    with torch.no_grad():
        graph = torch.export.export(module.eval(), args).module()
        prepared = prepare_pt2e(graph, quantizer)
        for sample in calibration or [args]:
            prepared(*sample)
        converted = convert_pt2e(prepared)
        return torch.export.export(converted, args), sorted(quantizer.annotated)
