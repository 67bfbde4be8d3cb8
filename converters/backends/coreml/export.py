"""CoreML (.mlpackage, mlprogram) export with coremltools, per precision.

The decoder is ONE multifunction mlpackage (`decoder.mlpackage`) with one function per variant K
(`decoder_k1`, `decoder_k16`; the default function is `decoder_k1`, the interactive one). Each K is
converted (and, for int8/mixed, quantized) on its own, then the functions are combined with
`coremltools.utils.save_multifunction`, which stores every identical weight once: the package holds
one copy of the decoder weights. Multifunction models need iOS 18 / macOS 15 (spec version 9).

Outputs are named explicitly. fp16 is a conversion-time compute precision; int8/mixed are
per-channel linear int8 weights (`linear_quantize_weights`) on an fp32 program, skipping the plan's
float layers. Quantization is deterministic, so both functions quantize to identical consts and
still share them.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from converters.backends.coreml.plan import coreml_keep_float_consts
from converters.backends.coreml.recipes import KIND_OPS
from converters.examples import decoder_sample, encoder_sample
from converters.logs import quiet
from converters.precision import PrecisionPlan, keep_float_ops
from converters.spec import DECODER_K, ExportSpec
from converters.wrappers import EncoderWrapper, decoder_module

MIN_TARGET = "iOS17"
DEFAULT_DECODER_K = 1  # the function an app gets without naming one
MULTIFUNCTION_MIN_OS = "iOS 18 / macOS 15 (multifunction ML program)"


def _register_ops() -> None:
    """Teach the TorchScript frontend `a | b` on booleans (used by the prompt encoder's label masks)."""
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY

    if _TORCH_OPS_REGISTRY.get_func("__or__") is not None:
        return

    def bool_or(context, node):
        x, y = _get_inputs(context, node, expected=2)
        context.add(mb.logical_or(x=mb.cast(x=x, dtype="bool"), y=mb.cast(x=y, dtype="bool"), name=node.name))

    # The registry looks `__or__` up as "or" (dunders stripped).
    _TORCH_OPS_REGISTRY.set_func_by_name(bool_or, "or")


def _convert(module: torch.nn.Module, args: tuple, in_names: list[str], out_names: list[str], precision: str):
    import coremltools as ct

    _register_ops()
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module.eval(), args, check_trace=False)
    inputs = [ct.TensorType(name=n, shape=tuple(a.shape)) for n, a in zip(in_names, args)]
    outputs = [ct.TensorType(name=n) for n in out_names]
    cp = ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32
    with quiet():
        return ct.convert(traced, inputs=inputs, outputs=outputs, convert_to="mlprogram",
                          minimum_deployment_target=getattr(ct.target, MIN_TARGET), compute_precision=cp)


def weight_const_names(mlmodel) -> list[str]:
    """Names of the const ops (weights) of an mlprogram."""
    prog = mlmodel._mil_program
    return [op.name for f in prog.functions.values() for op in f.operations if op.op_type == "const"]


def _quantize(mlmodel, module: torch.nn.Module, plan: PrecisionPlan):
    """int8 per-channel weights, except the consts the plan keeps float (by name, or by value for
    BatchNorm-folded convs whose consts lost their module names)."""
    import coremltools.optimize.coreml as cto

    glob = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
    skip = coreml_keep_float_consts(module, mlmodel, plan)
    config = cto.OptimizationConfig(
        global_config=glob,
        op_type_configs={t: None for t in keep_float_ops(plan, KIND_OPS)},
        op_name_configs={n: None for n in skip},
    )
    with quiet():
        return cto.linear_quantize_weights(mlmodel, config=config)


def _converted(module, args, in_names, out_names, spec: ExportSpec, plan: PrecisionPlan, description: str):
    ml = _convert(module, args, in_names, out_names, spec.precision)
    if spec.precision in ("int8", "mixed"):
        ml = _quantize(ml, module, plan)
    ml.short_description = f"{spec.config.name} {description} ({spec.precision})"
    return ml


def save_multifunction(parts: dict[str, Path], default: str, dst: Path) -> None:
    """Combine single-function packages `parts` (function name -> path) into one multifunction
    package at `dst`; identical weights are stored once."""
    import coremltools as ct

    desc = ct.utils.MultiFunctionDescriptor()
    for name, path in parts.items():
        desc.add_function(str(path), "main", name)
    desc.default_function_name = default
    with quiet():
        ct.utils.save_multifunction(desc, str(dst))


def export_coreml(model: torch.nn.Module, spec: ExportSpec, out_dir: Path, plan: PrecisionPlan, work: Path,
                  progress=None) -> dict:
    """Write encoder.mlpackage and the multifunction decoder.mlpackage into `out_dir`; returns `models`."""
    say = progress or (lambda msg: None)
    work.mkdir(parents=True, exist_ok=True)
    say("coreml: converting encoder")
    _converted(EncoderWrapper(model), encoder_sample(spec), [t.name for t in spec.encoder_inputs()],
               [t.name for t in spec.encoder_outputs()], spec, plan,
               "encoder").save(str(out_dir / spec.encoder_file))
    in_names = [t.name for t in spec.decoder_inputs(1)]
    out_names = [t.name for t in spec.decoder_outputs(1)]
    variants = spec.decoder_variants()
    parts: dict[str, Path] = {}
    for k in DECODER_K:
        say(f"coreml: converting decoder K={k}")
        name = str(variants[k]["signature"])
        parts[name] = work / f"{name}.mlpackage"
        _converted(decoder_module(model), decoder_sample(spec, k), in_names, out_names, spec, plan,
                   name).save(str(parts[name]))
    say("coreml: combining the decoder functions (weights stored once)")
    default = str(variants[DEFAULT_DECODER_K]["signature"])
    save_multifunction(parts, default, out_dir / str(variants[DEFAULT_DECODER_K]["file"]))

    def io(ts):
        return [t.to_dict() for t in ts]

    return {
        "encoder": {"file": spec.encoder_file, "signature": None, "inputs": io(spec.encoder_inputs()),
                    "outputs": io(spec.encoder_outputs())},
        "decoder": {"variants": {str(k): dict(v) for k, v in variants.items()},
                    "multifunction": {"default_function": default,
                                      "min_os": MULTIFUNCTION_MIN_OS},
                    "inputs": io(spec.decoder_inputs("K")), "outputs": io(spec.decoder_outputs("K"))},
    }
