"""ONNX target: encoder, one graph per decoder variant sharing `decoder.weights`, SAM's decoder signature."""

from converters.backends.base import Backend, Capabilities, run_lazily
from converters.backends.onnx.recipes import APPLIED, KIND_OPS

CAPABILITIES = Capabilities(
    extension="onnx",
    decoder_packaging="graphs",
    min_os="onnxruntime>=1.17 (Android 7 / API 24, iOS 15)",
    precisions=("fp32", "fp16", "int8", "mixed", "w8a8"),
    int8_weight_layers=("linear", "conv"),
    int8_activation_layers=("linear", "conv", "matmul"),
    fake_quant_thresholds={"mask_iou_mean": 0.95},
    extra_model_files=("decoder_sam_onnx.onnx",),
)

BACKEND = Backend(
    name="onnx",
    capabilities=CAPABILITIES,
    export=run_lazily("converters.backends.onnx.export", "export_onnx"),
    export_w8a8=run_lazily("converters.backends.onnx.w8a8", "export_w8a8"),
    runtime_kind="onnx",
    applied=APPLIED,
    kind_ops=KIND_OPS,
)
