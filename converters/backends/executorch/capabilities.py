"""What the ExecuTorch target is and can do, as data (no executorch import)."""

from __future__ import annotations

EXTENSION = "pte"
RUNTIME = "executorch"
RUNTIME_VERSION = "1.5.1"
DELEGATE = "XNNPACK"
# Decoder variants are methods (`decoder_k1`, `decoder_k16`) of one program. Measured at 128 px (trained
# TinySAM, 2 cores): one program 21.7 MB, both methods loaded in 19.5 ms (median of 7); two programs
# 21.6 + 21.6 MB, loaded in 19.2 ms. One program stores the weights once at the same load time, and
# lowers in 32 s instead of 22 + 24 s.
DECODER_PACKAGING = "methods of one program"
ENCODER_METHOD = "forward"
MIN_OS = (f"ExecuTorch runtime {RUNTIME_VERSION} with the {DELEGATE} delegate (Android arm64 / iOS, any OS it "
          "builds for)")
# Layer kinds the quantizer (PT2E, XNNPACKQuantizer) is scoped to: the whole-model configuration fails in
# TinyViT's padded windows (static: XNNPACK refuses the quantized pad at load; dynamic: the lowering fails).
INT8_WEIGHT_LAYERS = ("Linear", "Conv2d")
INT8_ACTIVATION_LAYERS = {"Linear": "dynamic (per row, at run time)", "Conv2d": "static (calibrated)"}
PRECISIONS = ("fp32", "int8", "mixed")
PHONE_NEEDS = {"runtime": f"ExecuTorch {RUNTIME_VERSION} (the .pte format of that release; other releases may "
                          "not load it)",
               "delegate": f"{DELEGATE} backend linked into the app (executorch's xnnpack_backend)",
               "kernels": "portable (or optimized) kernels for the ops outside XNNPACK: LayerNorm, expand_copy, "
                          "split and the decoder's prompt logic",
               "call": "method by name (`forward`; `decoder_k1` / `decoder_k16`), inputs by position"}

# What the int8 / mixed files hold (the manifest's `precision_plan.applied`).
APPLIED_INT8 = {
    "weights": "int8 per-channel (PT2E, XNNPACKQuantizer, max-based symmetric scales): every Linear; the "
               "encoder's Conv2d; layers the plan keeps float stay float32",
    "activations": "Linear inputs int8 per row at run time (XNNPACK dynamically quantized fully-connected); "
                   "encoder Conv2d inputs static int8 per tensor, ranges calibrated on the calibration images; "
                   "everything else (LayerNorm, softmax, GELU, attention products, padding) float32",
}
APPLIED_MIXED = {
    "weights": APPLIED_INT8["weights"] + " (the mixed plan's keep-float rules select them)",
    "activations": APPLIED_INT8["activations"],
}
SEARCHED_SCALES = ("not used: the XNNPACK quantizer takes observer constructors, not given scales; the package "
                   "takes max-based weight scales and calibrated activation ranges")
UNSUPPORTED_PRECISIONS = {
    # Measured at 128 px (trained TinySAM): the encoder in float16 (weights and compute, float32 in and out)
    # lowered to XNNPACK runs 59 ms vs 20 ms fp32 on x86 and its embedding is wrong (relative error 155 vs
    # the same float16 model in eager torch, which is within 1.4e-3 of fp32).
    "fp16": "XNNPACK's float16 program computed a wrong embedding here (relative error 155 against the same "
            "float16 model in torch), and ran 3x slower than fp32 on x86",
    "w8a8": "the recipe's static int8 activations would need its scales in the XNNPACK quantizer (which takes "
            "observers, not scales) and static int8 across TinyViT's padded windows (which XNNPACK refuses)",
}
