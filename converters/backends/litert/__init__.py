"""LiteRT (.tflite) target: encoder, and one decoder file with a signature per variant (`k1`, `k16`)."""

from converters.backends.base import Backend, Capabilities, MixedSupport, W8A8Support, run_lazily
from converters.backends.litert.recipes import APPLIED, KIND_OPS

W8A8 = W8A8Support(
    int8_matmul=False,
    matmul_float_reason="attention product (BATCH_MATMUL): its int8 form fails to prepare in LiteRT 2.3",
    static_activation_prefixes=("image_encoder.",),
    weights_only_reason="LiteRT decoder: int8 weights, float activations: "
                        "converters/backends/litert/w8a8_quantize.py sets the recipe's activation scales on the "
                        "tensors of one signature, and the decoder file holds two (k1, k16)",
    twin_uniform="dynamic_int8",
    dynamic_activation_note=(
        "int8 per row at run time (dynamic-range FULLY_CONNECTED: XNNPACK quantizes each row of the input "
        "to its own asymmetric range, which keeps the skewed post-GELU range that no static int8 scale "
        "holds; the recipe's twin-uniform scale is not used); the weights are int8"),
)

# Mixed packages: per layer group, float / int8 weights / dynamic int8 inputs (FULLY_CONNECTED only: the
# dynamic-range convolution runs outside XNNPACK, slower than fp32) / static int8 inputs with the recipe's
# scales, in the encoder; the decoder file holds two signatures, so only int8 weights there
# (`weights_only_reason` above); attention products stay float (`matmul_float_reason`); float layers keep
# float compute with float16 weights.
MIXED = MixedSupport(
    linear=("float", "int8_weights", "dynamic_int8", "static_int8"),
    conv=("float", "int8_weights", "static_int8"),
    matmul=("float",),
    twin_input=("float", "int8_weights", "dynamic_int8"),
    activation_prefixes=("image_encoder.",),
    float_weight_bytes=2,
)

CAPABILITIES = Capabilities(
    extension="tflite",
    decoder_packaging="signatures",
    min_os="LiteRT 2.x (Android 8 / API 26, iOS 15)",
    precisions=("fp32", "fp16", "int8", "mixed", "w8a8"),
    int8_weight_layers=("linear", "conv"),
    int8_activation_layers=("linear", "conv"),
    # its int8 ops also requantize their outputs with ranges LiteRT calibrates itself (0.952 measured at 128 px)
    fake_quant_thresholds={"mask_iou_mean": 0.92},
    w8a8=W8A8,
    mixed=MIXED,
)

BACKEND = Backend(
    name="tflite",
    capabilities=CAPABILITIES,
    export=run_lazily("converters.backends.litert.export", "export_tflite"),
    export_w8a8=run_lazily("converters.backends.litert.w8a8", "export_w8a8"),
    runtime_kind="tflite",
    applied=APPLIED,
    kind_ops=KIND_OPS,
    export_mixed=run_lazily("converters.backends.litert.mixed", "export_mixed"),
)
