"""ExecuTorch quantization recipes in its terms: op tables and what the files hold per precision."""

from __future__ import annotations

from converters.backends.base import AppliedTables

# Plan rule kind -> op types kept float: none to list, only Linear/Conv2d are quantized (`quantize.py`).
KIND_OPS: dict[str, tuple[str, ...]] = {"normalization": (), "softmax": ()}

_INT8 = {
    "weights": "int8 per-channel (PT2E, XNNPACKQuantizer, max-based symmetric scales): every Linear; the "
               "encoder's Conv2d; layers the plan keeps float stay float32",
    "activations": "Linear inputs int8 per row at run time (XNNPACK dynamically quantized fully-connected); "
                   "encoder Conv2d inputs static int8 per tensor, ranges calibrated on the calibration images; "
                   "everything else (LayerNorm, softmax, GELU, attention products, padding) float32",
}

APPLIED = AppliedTables(
    int8=_INT8,
    mixed={"weights": _INT8["weights"] + " (a fixed plan's keep-float rules select them; a measured plan: its "
                      "int8 layers, weights snapped to the recipe's grid)",
           "activations": "fixed plans: as int8; measured plans: per layer as the plan says, float, int8 per row "
                          "at run time (Linear) or static int8 with the recipe's searched input scale (encoder "
                          "only; outputs requantized with ranges observed on the calibration images)"},
    w8a8={},  # not built (capabilities.REFUSED)
    searched_scales="measured mixed plans: the static layers' input scales (fixed quantization parameters) and, "
                    "through the snapped weights, the weight scales; int8 and fixed plans: max-based weight "
                    "scales and calibrated activation ranges",
)
