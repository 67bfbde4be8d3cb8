"""CoreML (.mlpackage, mlprogram) target: encoder, and one multifunction decoder (`decoder_k1`, `decoder_k16`)."""

from converters.backends.base import Backend, Capabilities, MixedSupport, run_lazily
from converters.backends.coreml.recipes import APPLIED, KIND_OPS

CAPABILITIES = Capabilities(
    extension="mlpackage",
    decoder_packaging="functions",
    min_os="iOS 18 / macOS 15 (mlprogram; multifunction decoder)",
    precisions=("fp32", "fp16", "int8", "mixed", "w8a8"),
    int8_weight_layers=("linear", "conv"),
    int8_activation_layers=("linear", "conv", "matmul"),
    fake_quant_thresholds={"mask_iou_mean": 0.95},
    split_decoder_refused=("not converted for this format yet: the split decoder (converters.fast_decoder) is exported and parity-checked for onnx and tflite; CoreML packages keep the full decoder variants for every prompt"),
    # mixed: int8 activations (quantize/dequantize ops, iOS 17+) on the plan's layers, int8 weights elsewhere
    mixed=MixedSupport(linear=("float", "int8_weights", "static_int8"), conv=("float", "int8_weights", "static_int8"),
                       matmul=("float",), twin_input=("float", "int8_weights"),
                       speed="not measurable here: CoreML cannot run off Apple hardware (the emulator checks "
                             "correctness only); the plan's speed gains are the MAC shares of its int8 layers"),
)

BACKEND = Backend(
    name="coreml",
    capabilities=CAPABILITIES,
    export=run_lazily("converters.backends.coreml.export", "export_coreml"),
    export_w8a8=run_lazily("converters.backends.coreml.w8a8", "export_w8a8"),
    runtime_kind="coreml",
    applied=APPLIED,
    kind_ops=KIND_OPS,
    export_mixed=run_lazily("converters.backends.coreml.mixed", "export_mixed"),
)
