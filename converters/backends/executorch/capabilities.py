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
    "w8a8": "the XNNPACK quantizer takes observers, not the recipe's given scales, and static int8 across "
            "TinyViT's padded windows does not load in XNNPACK",
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
    # mixed: the plan picks per group float or the XNNPACK quantizer's int8 (Linear inputs per row at run
    # time, Conv2d static with its own observers, which the plan's accuracy models with the recipe's scales);
    # no speed table here: at 1024 px on x86 its int8 program was no faster than fp32 (README)
    mixed=MixedSupport(linear=("float", "dynamic_int8"), conv=("float", "static_int8"), matmul=("float",),
                       twin_input=("float", "dynamic_int8"),
                       speed="no speed table: the int8 ExecuTorch program measured no faster than fp32 at 1024 px "
                             "on this x86 machine; the plan's gains are the MAC shares of its int8 layers"),
)
