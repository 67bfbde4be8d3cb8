"""ONNX quantization recipes in ONNX terms: which nodes a plan keeps float, and what the files hold."""

from __future__ import annotations

from converters.backends.base import AppliedTables
from converters.precision import PrecisionPlan, keep_float_ops, rules_for_names

# Plan rule kind -> ONNX op types that stay float.
KIND_OPS: dict[str, tuple[str, ...]] = {
    "normalization": ("LayerNormalization", "BatchNormalization", "InstanceNormalization", "ReduceMean"),
    "softmax": ("Softmax",),
}


def onnx_nodes_to_exclude(plan: PrecisionPlan, nodes: list[tuple[str, str]]) -> list[str]:
    """ONNX: names of nodes (name, op_type) that quantization must skip.

    onnxruntime's quantizer first rewrites every Gemm into MatMul + Add named `<gemm>_MatMul` /
    `<gemm>_Add` (`ONNXModel.replace_gemm_with_matmul`), so an excluded Gemm is listed under both names.
    """
    ops = set(keep_float_ops(plan, KIND_OPS))
    rules = rules_for_names(plan, [n for n, _ in nodes])
    out: list[str] = []
    for name, op in nodes:
        if op in ops or any(rx.search(name) for rx in rules):
            out += [name, f"{name}_MatMul"] if op == "Gemm" else [name]
    return out


APPLIED = AppliedTables(
    int8={
        "weights": "int8 per-channel: MatMul/Gemm by onnxruntime quantize_dynamic, Conv/ConvTranspose "
                   "weight-only (int8 initializer + Cast + Mul, folded at load); kept-float layers and the prompt "
                   "encoder's weights float32",
        "activations": "MatMul/Gemm inputs quantized per tensor at run time (MatMulInteger); convolutions float32 "
                       "(ConvInteger was 2x slower than fp32 here); everything else (LayerNorm, softmax, GELU, "
                       "attention products) float32",
    },
    mixed={
        "weights": "int8 per-channel, max-based symmetric scales (converters.backends.onnx.weight_only: int8 "
                   "initializer + Cast + Mul, folded to float when the session loads), MatMul/Gemm/Conv/ConvTranspose; "
                   "kept layers and the prompt encoder's weights float32",
        "activations": "float32 (no run-time quantization: the masks are the measured fake-quant model's)",
    },
    w8a8={
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
    searched_scales="not used by the package; --precision w8a8 writes QDQ graphs with the recipe's scales",
)
