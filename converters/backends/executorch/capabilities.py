"""What the ExecuTorch target is, builds and needs (`CAPABILITIES`); no executorch import."""

from __future__ import annotations

from converters.backends.base import Capabilities, MixedSupport

RUNTIME_VERSION = "1.5.1"  # the executorch release the packages are exported and checked with
DELEGATE = "XNNPACK"
ENCODER_METHOD = "forward"
# Decoder variants are methods (`decoder_k1`, `decoder_k16`) of one program. Measured at 128 px (trained
# TinySAM, 2 busy cores): one program 21.7 MB, both methods loaded in 19.5 ms (median of 7); two programs
# 21.6 + 21.6 MB, both loaded in 19.2 ms. One program stores the weights once at the same load time, and
# lowers in 32 s instead of 22 + 24 s.
DECODER_PACKAGING = "methods"

REFUSED = {
    # Measured at 128 px (trained TinySAM): the encoder in float16 (weights and compute, float32 in and
    # out) lowered to XNNPACK ran 59 ms vs 20 ms fp32 on x86, and its embedding was wrong (relative error
    # 155 against the same float16 model in eager torch, which is within 1.4e-3 of fp32).
    "fp16": "XNNPACK's float16 program computed a wrong embedding here (relative error 155 against the same "
            "float16 model in torch) and ran 3x slower than fp32 on x86",
    "w8a8": "the recipe keeps int8 weights with float inputs on the encoder's trunk and the decoder, a form the "
            "XNNPACK quantizer does not have (mixed packages take the recipe's scales for their static layers)",
}

PHONE_NEEDS = {
    "runtime": f"ExecuTorch {RUNTIME_VERSION} (the .pte format of that release; other releases may not load it)",
    "delegate": f"{DELEGATE} backend linked into the app (executorch's xnnpack_backend)",
    "kernels": "portable (or optimized) kernels for the ops outside XNNPACK: LayerNorm, expand_copy, split and "
               "the decoder's prompt logic",
    "call": "method by name (`forward`; `decoder_k1` / `decoder_k16`), inputs by position",
}

CAPABILITIES = Capabilities(
    extension="pte",
    decoder_packaging=DECODER_PACKAGING,
    min_os=f"ExecuTorch runtime {RUNTIME_VERSION} with the {DELEGATE} delegate (Android arm64 / iOS, any OS it "
           "builds for)",
    precisions=("fp32", "int8", "mixed"),
    # PT2E with the XNNPACK quantizer scoped to Linear and Conv2d: the whole-model configuration fails in
    # TinyViT's padded windows (static: XNNPACK refuses the quantized pad at load; dynamic: lowering fails)
    int8_weight_layers=("linear", "conv"),
    int8_activation_layers=("linear", "conv"),  # Linear dynamic (per row at run time), Conv2d static
    refused=REFUSED,
    runtime_requirements=PHONE_NEEDS,
    split_decoder_refused=("not converted for this format yet: the split decoder (converters.fast_decoder) is exported and parity-checked for onnx and tflite; ExecuTorch packages keep the full decoder variants for every prompt"),
    # static int8 ops requantize their outputs with ranges observed on the calibration images, which the
    # recipe's fake-quant model does not model (as LiteRT's)
    fake_quant_thresholds={"mask_iou_mean": 0.92},
    # mixed: per layer float, dynamic int8 (Linear) or static int8 with the recipe's input scales; static
    # only in the encoder (the decoder programs have no calibration prompts for their output ranges); no
    # int8-weights-only form in the XNNPACK quantizer; attention products float; float layers float32
    mixed=MixedSupport(linear=("float", "dynamic_int8", "static_int8"), conv=("float", "static_int8"),
                       matmul=("float",), twin_input=("float", "dynamic_int8"), static_prefixes=("image_encoder.",)),
)
