"""CoreML quantization recipes in CoreML terms: op tables and what the files hold per precision."""

from __future__ import annotations

from converters.backends.base import AppliedTables

# Plan rule kind -> CoreML op types that stay float. CoreML never quantizes weights under
# weight_threshold (2048 elements): norm scales are smaller, and excluding op types here conflicts
# with constants the converter shares.
KIND_OPS: dict[str, tuple[str, ...]] = {"normalization": (), "softmax": ()}

_INT8 = {
    "weights": "int8 per-channel (linear_quantize_weights), kept-float consts float32",
    "activations": "float32 (weight-only int8)",
}

APPLIED = AppliedTables(
    int8=_INT8,
    mixed=_INT8,
    w8a8={
        "weights": "int8 per-channel with the recipe's searched scales (constexpr_affine_dequantize), encoder "
                   "and decoder",
        "activations": "static int8 per tensor with the recipe's scales (quantize/dequantize ops, iOS17) on each "
                       "layer's input and the matmul operands; twin-uniform inputs float32",
    },
    searched_scales="not used by the package; --precision w8a8 converts the recipe's scales into "
                    "quantize/dequantize ops",
)
