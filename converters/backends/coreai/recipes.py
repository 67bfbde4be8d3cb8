"""Core AI compression recipes in coreai-opt terms: op tables and what the files hold per precision."""

from __future__ import annotations

from converters.backends.base import AppliedTables

# coreai-opt compresses Linear / Conv weights only: no norm or softmax op carries weights to keep float.
KIND_OPS: dict[str, tuple[str, ...]] = {"normalization": (), "softmax": ()}

_INT8 = {
    "weights": "int8 per-channel (coreai-opt QuantizerConfig.presets.w8, eager), kept-float layers float32",
    "activations": "float32 (weight-only int8; the Linux runtime dequantizes the weights)",
}

APPLIED = AppliedTables(
    int8=_INT8,
    mixed=_INT8,
    w8a8={"weights": "not exported", "activations": "Core AI has no export of the Q-TinySAM recipe; see w8a8-opt"},
    searched_scales="not used: Core AI has no export of the Q-TinySAM recipe; --precision w8a8-opt calibrates "
                    "with coreai-opt",
)
