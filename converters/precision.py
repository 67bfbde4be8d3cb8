"""The precision plan as data, and its translation into each backend's terms.

A plan is a default weight dtype plus ordered "keep float" rules. A rule selects layers either
by module path (a regex searched in the layer name, written with `.` between path parts; the
backends' own separators `/` and `_` are accepted too) or by kind (`normalization`, `softmax`).
Each converter asks this module which of its own node/tensor/op names to leave in float.

`w8a8` is the Q-TinySAM recipe (`tinysam.quant`): int8 weights and static int8 activations with the
recipe's searched scales; its plan (which layers are int8, what stays float and why) is built by
`converters.w8a8.w8a8_plan` from the calibrated model.

Mixed plans come in two kinds: the fixed plan below (`mixed-default-v1`), and a plan measured on
calibration data (`converters.mixed_plan`, rules from per-group mask-IoU sensitivity). A rule with
`"scope": "activations"` concerns only how a layer's input activation is quantized (twin-uniform
ranges have no int8 form); the weight-only int8 exporters ignore it and quantize that layer's weights.
`applied_precision` records, per backend, what the exported files actually hold.
"""

from __future__ import annotations

import re

from converters.spec import PRECISIONS, check_choice

MIXED_PLANS: tuple[str, ...] = ("auto", "measured", "fixed")
# "auto": measured up to this input size, fixed above. Measured on 2 shared cores (1 thread, busy
# machine), seeded TinySAM: 78-85 s at 256, 930 s at 1024 (encoder cost grows with the pixels).
AUTO_MEASURED_MAX_SIZE = 512


def resolve_mixed_plan(mixed_plan: str, image_size: int, budget_given: bool = False) -> str:
    """"auto" -> "measured" at input sizes up to AUTO_MEASURED_MAX_SIZE or when a budget is given, else "fixed"."""
    check_choice("mixed plan", mixed_plan, MIXED_PLANS)
    if mixed_plan != "auto":
        return mixed_plan
    return "measured" if budget_given or image_size <= AUTO_MEASURED_MAX_SIZE else "fixed"

# Fixed, sensible mixed plan until measured PTQ plans exist: the stem, normalizations, softmax and
# the decoder's output upscaling stay float; all other weights are int8.
MIXED_KEEP_FLOAT: tuple[dict, ...] = (
    {"module": r"image_encoder\.patch_embed", "reason": "stem: first convs see raw pixels"},
    {"kind": "normalization", "reason": "LayerNorm/BatchNorm statistics are range-sensitive"},
    {"kind": "softmax", "reason": "attention probabilities"},
    {"module": r"mask_decoder\.output_upscaling", "reason": "decoder output upscaling feeds the mask logits"},
)

# Op types per kind, in each backend's vocabulary.
KIND_OPS: dict[str, dict[str, tuple[str, ...]]] = {
    "normalization": {
        "onnx": ("LayerNormalization", "BatchNormalization", "InstanceNormalization", "ReduceMean"),
        "tflite": (),  # no weights to quantize in LiteRT's norm lowering; listed for completeness
        # CoreML never quantizes weights under weight_threshold (2048 elements): norm scales are
        # smaller, and excluding op types here conflicts with constants the converter shares.
        "coreml": (),
        "coreai": (),  # coreai-opt compresses Linear/Conv weights only
    },
    "softmax": {"onnx": ("Softmax",), "tflite": ("SOFTMAX",), "coreml": (), "coreai": ()},
}

# Core AI-only precisions (coreai-opt): what they store, for the plan written into the manifest.
CORE_AI_PLANS: dict[str, dict] = {
    "palette4": {"name": "palette4", "weights": "4-bit palettized (k-means lookup table per 16 output channels)",
                 "activations": "float32", "keep_float": []},
    "palette6": {"name": "palette6", "weights": "6-bit palettized (k-means lookup table per 16 output channels)",
                 "activations": "float32", "keep_float": []},
    "w8a8-opt": {"name": "w8a8-opt", "weights": "int8", "granularity": "per_channel",
                 "activations": "int8 static per tensor (coreai-opt calibration) in the encoder, float32 in the decoder",
                 "keep_float": []},
}


def precision_plan(precision: str) -> dict:
    """The plan for `precision` as plain data (also written into the manifest)."""
    check_choice("precision", precision, PRECISIONS)
    if precision in ("fp32", "fp16"):
        dtype = "float32" if precision == "fp32" else "float16"
        return {"name": precision, "weights": dtype, "activations": dtype, "keep_float": []}
    if precision in CORE_AI_PLANS:
        return json_copy(CORE_AI_PLANS[precision])
    if precision == "w8a8":
        return {"name": "w8a8-qtinysam", "weights": "int8", "granularity": "per_channel",
                "activations": "int8", "activation_granularity": "per_tensor, static (the recipe's scales)",
                "keep_float": []}
    plan = {"name": precision, "weights": "int8", "granularity": "per_channel",
            "activations": "dynamic int8 at run time (ONNX Runtime, LiteRT), float32 (CoreML)",
            "keep_float": []}
    if precision == "mixed":
        plan["activations"] = "float32"
        plan["name"] = "mixed-default-v1"
        plan["keep_float"] = [dict(r) for r in MIXED_KEEP_FLOAT]
    return plan


def json_copy(plan: dict) -> dict:
    """A deep copy of a plain-data plan."""
    import json

    return json.loads(json.dumps(plan))


def module_regex(pattern: str) -> re.Pattern:
    """Compile a module-path rule so it also matches names written with `/` or `_` separators."""
    return re.compile(pattern.replace(r"\.", r"[./_]"))


def weight_rules(plan: dict) -> list[dict]:
    """Keep-float rules that apply to weights (all rules except activation-only ones)."""
    return [r for r in plan.get("keep_float", []) if r.get("scope", "all") != "activations"]


def _module_rules(plan: dict) -> list[re.Pattern]:
    return [module_regex(r["module"]) for r in weight_rules(plan) if "module" in r]


def _kinds(plan: dict) -> list[str]:
    return [r["kind"] for r in weight_rules(plan) if "kind" in r]


def keep_float_name(plan: dict, name: str) -> bool:
    """True if the layer called `name` (any backend's spelling) must stay float under `plan`."""
    return any(rx.search(name) for rx in _module_rules(plan))


def keep_float_ops(plan: dict, backend: str) -> list[str]:
    """Op types (backend vocabulary) that `plan` keeps float."""
    ops: list[str] = []
    for kind in _kinds(plan):
        ops.extend(KIND_OPS[kind][backend])
    return ops


WRAPPED_PARTS = ("mask_decoder", "prompt_encoder")


def without_top_module(pattern: str) -> str | None:
    """A decoder-side module rule without its top module (`mask_decoder\\.x` -> `x`), else None.

    The exported decoder graphs call into these parts' children (`transformer`, `output_upscaling`,
    ...) from a wrapper, so their layer names carry no `mask_decoder` / `prompt_encoder` scope.
    """
    parts = pattern.split(r"\.", 1)
    return parts[1] if len(parts) == 2 and parts[0] in WRAPPED_PARTS else None


def rules_for_names(plan: dict, names: list[str]) -> list[re.Pattern]:
    """The plan's module rules as regexes for one graph: a rule that matches none of `names` is
    tried again without its top module (`without_top_module`)."""
    out = []
    for r in weight_rules(plan):
        if "module" not in r:
            continue
        rx = module_regex(r["module"])
        inner = without_top_module(r["module"])
        if inner is not None and not any(rx.search(n) for n in names):
            rx = module_regex(inner)
        out.append(rx)
    return out


def onnx_nodes_to_exclude(plan: dict, nodes: list[tuple[str, str]]) -> list[str]:
    """ONNX: names of nodes (name, op_type) that quantization must skip.

    onnxruntime's quantizer first rewrites every Gemm into MatMul + Add named `<gemm>_MatMul` /
    `<gemm>_Add` (`ONNXModel.replace_gemm_with_matmul`), so an excluded Gemm is listed under both names.
    """
    ops = set(keep_float_ops(plan, "onnx"))
    rules = rules_for_names(plan, [n for n, _ in nodes])
    out: list[str] = []
    for name, op in nodes:
        if op in ops or any(rx.search(name) for rx in rules):
            out += [name, f"{name}_MatMul"] if op == "Gemm" else [name]
    return out


def tflite_float_regexes(plan: dict) -> list[str]:
    """LiteRT (ai-edge-quantizer): tensor-name regexes whose ops get NO_QUANTIZE."""
    return [module_regex(r["module"]).pattern for r in weight_rules(plan) if "module" in r]


def coreml_float_const_names(plan: dict, const_names: list[str]) -> list[str]:
    """CoreML: weight-const op names that `linear_quantize_weights` must skip."""
    return [n for n in const_names if keep_float_name(plan, n)]


# What each backend's int8 files hold: int8 weights; ONNX Runtime and LiteRT also quantize the inputs of
# the int8 layers at run time (dynamic quantization), CoreML computes in float.
_APPLIED_INT8: dict[str, dict[str, str]] = {
    "onnx": {
        "weights": "int8 per-channel: MatMul/Gemm by onnxruntime quantize_dynamic, Conv/ConvTranspose "
                   "weight-only (int8 initializer + Cast + Mul, folded at load); kept-float layers float32",
        "activations": "MatMul/Gemm inputs quantized per tensor at run time (MatMulInteger); convolutions float32 "
                       "(ConvInteger was 2x slower than fp32 here); everything else (LayerNorm, softmax, GELU, "
                       "attention products) float32",
    },
    "tflite": {
        "weights": "int8 per-channel (ai-edge-quantizer): FULLY_CONNECTED dynamic-range, convolutions "
                   "weight-only (DEQUANTIZE of the weights)",
        "activations": "FULLY_CONNECTED inputs quantized per row at run time (XNNPACK's dynamically quantized "
                       "kernels); convolutions float32 (their dynamic-range form runs outside XNNPACK, slower than "
                       "fp32); BATCH_MATMUL (attention products) float32: its int8 form fails to prepare in "
                       "LiteRT 2.3; everything else float32",
    },
    "coreml": {
        "weights": "int8 per-channel (linear_quantize_weights), kept-float consts float32",
        "activations": "float32 (weight-only int8)",
    },
    "coreai": {
        "weights": "int8 per-channel (coreai-opt QuantizerConfig.presets.w8, eager), kept-float layers float32",
        "activations": "float32 (weight-only int8; the Linux runtime dequantizes the weights)",
    },
}

# What each backend's mixed files hold: int8 weights stored, float compute, kept layers in higher precision.
_APPLIED_MIXED: dict[str, dict[str, str]] = {
    "onnx": {
        "weights": "int8 per-channel, max-based symmetric scales (converters.onnx_weight_only: int8 initializer + "
                   "Cast + Mul, folded to float when the session loads), MatMul/Gemm/Conv/ConvTranspose; "
                   "kept layers float32",
        "activations": "float32 (no run-time quantization: the masks are the measured fake-quant model's)",
    },
    "tflite": {
        "weights": "int8 per-channel, max-based symmetric (ai-edge-quantizer weight-only: DEQUANTIZE of each "
                   "weight); kept layers float16 weights where the rule says fp16 (measured plans), else float32",
        "activations": "float32 (no run-time quantization)",
    },
    "coreml": _APPLIED_INT8["coreml"],
    "coreai": _APPLIED_INT8["coreai"],
}

# Where the recipe's searched scales go instead (int8 and mixed packages take max-based weight scales).
_SEARCHED_SCALES: dict[str, str] = {
    "onnx": "not used by the package; --precision w8a8 writes QDQ graphs with the recipe's scales",
    "tflite": "not used by the package; --precision w8a8 builds a static int8 encoder with the recipe's scales "
              "(converters/tflite_w8a8.py)",
    "coreml": "not used by the package; --precision w8a8 converts the recipe's scales into quantize/dequantize ops",
    "coreai": "not used: Core AI has no export of the Q-TinySAM recipe; --precision w8a8-opt calibrates with coreai-opt",
}


# What each backend's w8a8 files hold (converters.w8a8_export); the per-layer split is in the plan's `layers`.
_APPLIED_W8A8: dict[str, dict[str, str]] = {
    "onnx": {
        "weights": "int8 per-channel with the recipe's searched scales, encoder and every decoder graph: "
                   "initializer + DequantizeLinear; for layers whose input stays float, Cast + Mul (ONNX Runtime "
                   "folds it at load; a DequantizeLinear there becomes MatMulNBits, which quantizes the float "
                   "input to int8 per block of 32, not the recipe)",
        "activations": "static int8 per tensor with the recipe's scales (QuantizeLinear/DequantizeLinear before "
                       "each layer's input and both operands of q @ k^T; the B operand of softmax @ v); "
                       "twin-uniform inputs (post-GELU fc2/lin2, post-softmax probabilities) float32",
        "runtime": "ONNX Runtime fuses QDQ pairs into int8 kernels where it can; elsewhere it computes the "
                   "same quantize-dequantize in float",
    },
    "tflite": {
        "weights": "FULLY_CONNECTED/CONV_2D int8 per-channel, encoder and decoder: ai-edge-quantizer takes no "
                   "given weight scales, so the weights are first snapped to the recipe's grid (codes clipped "
                   "to +-127), from which its max-based scale is the recipe's scale (exact for channels whose "
                   "searched scale clips, within half a step otherwise)",
        "activations": "encoder FC/CONV inputs static int8 with the recipe's scales (given to the quantizer as "
                       "min/max statistics); static int8 ops also write int8 outputs, requantized with ranges "
                       "LiteRT calibrates on the calibration images (not in the recipe); twin-uniform post-GELU "
                       "fc2 inputs int8 per row at run time (dynamic-range FULLY_CONNECTED); attention products "
                       "(BATCH_MATMUL) and the decoder float32",
    },
    "coreml": {
        "weights": "int8 per-channel with the recipe's searched scales (constexpr_affine_dequantize), encoder "
                   "and decoder",
        "activations": "static int8 per tensor with the recipe's scales (quantize/dequantize ops, iOS17) on each "
                       "layer's input and the matmul operands; twin-uniform inputs float32",
    },
}


def applied_precision(plan: dict, target: str) -> dict:
    """What the `target` files hold under `plan` (for the manifest), per weights/activations."""
    if plan.get("name") in CORE_AI_PLANS:
        return {"weights": plan["weights"], "activations": plan["activations"]}
    if plan.get("activations") == "int8":
        return dict(_APPLIED_W8A8[target])
    if plan.get("weights") != "int8":
        return {"weights": plan.get("weights"), "activations": plan.get("activations")}
    out = dict((_APPLIED_MIXED if plan.get("name", "").startswith("mixed") else _APPLIED_INT8)[target])
    out["searched_scales"] = _SEARCHED_SCALES[target]
    act_only = [r["module"] for r in plan.get("keep_float", []) if r.get("scope") == "activations"]
    if act_only:
        out["activation_only_rules"] = (f"{len(act_only)} twin-uniform rules concern activations only; the "
                                        "weights of those layers are int8 here")
    return out
