"""LiteRT quantization recipes in LiteRT terms: op tables and what the files hold per precision."""

from __future__ import annotations

from converters.backends.base import AppliedTables

# Plan rule kind -> LiteRT op types that stay float. LiteRT's norm lowering has no weights to
# quantize (listed for completeness).
KIND_OPS: dict[str, tuple[str, ...]] = {"normalization": (), "softmax": ("SOFTMAX",)}

CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_TRANSPOSE")
WEIGHT_OPS = ("FULLY_CONNECTED", *CONV_OPS)

APPLIED = AppliedTables(
    int8={
        "weights": "int8 per-channel (litert-quantizer): FULLY_CONNECTED dynamic-range, convolutions "
                   "weight-only (DEQUANTIZE of the weights)",
        "activations": "FULLY_CONNECTED inputs quantized per row at run time (XNNPACK's dynamically quantized "
                       "kernels); convolutions float32 (their dynamic-range form runs outside XNNPACK, slower than "
                       "fp32); BATCH_MATMUL (attention products) float32: its int8 form fails to prepare in "
                       "LiteRT 2.3; everything else float32",
    },
    mixed={
        "weights": "int8 per-channel, max-based symmetric (litert-quantizer weight-only: DEQUANTIZE of each "
                   "weight); kept layers float16 weights where the rule says fp16 (measured plans), else float32",
        "activations": "float32 (no run-time quantization)",
    },
    w8a8={
        "weights": "FULLY_CONNECTED/CONV_2D int8 per-channel, encoder and decoder: litert-quantizer takes no "
                   "given weight scales, so the weights are first snapped to the recipe's grid (codes clipped "
                   "to +-127), from which its max-based scale is the recipe's scale (exact for channels whose "
                   "searched scale clips, within half a step otherwise)",
        "activations": "encoder FC/CONV inputs static int8 with the recipe's scales (given to the quantizer as "
                       "min/max statistics); static int8 ops also write int8 outputs, requantized with ranges "
                       "LiteRT calibrates on the calibration images (not in the recipe); twin-uniform post-GELU "
                       "fc2 inputs int8 per row at run time (dynamic-range FULLY_CONNECTED); attention products "
                       "(BATCH_MATMUL) and the decoder float32",
    },
    searched_scales="not used by the package; --precision w8a8 builds a static int8 encoder with the recipe's "
                    "scales (converters/backends/litert/w8a8_quantize.py)",
)
