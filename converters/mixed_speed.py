"""Encoder speed of a mixed plan per target: a cost table from whole-encoder times measured once at 1024.

Timing one package per group and mode at 1024 px would take hours on this machine, and the LiteRT
Python interpreter has no per-op profiler. The cost table is therefore anchored on whole-encoder
medians measured in the target's runtime at 1024 px, 2 threads (`SpeedAnchors`): fp32; every FC
dynamic int8 with float convolutions (`int8`); int8 weights and float compute everywhere (`mixed`,
weight-only); every layer at its fastest mode (`w8a8`: static int8 inputs with the recipe's scales,
post-GELU fc2 dynamic). Per multiply-accumulate of a layer, a mode saves (solved from the anchors):
- dynamic_int8 (Linear): (fp32 - int8) / linear MACs;
- static_int8: (fp32 - w8a8 - fc2 MACs x dynamic saving) / (other Linear + Conv MACs);
- int8_weights: (fp32 - weight-only) / all MACs.
A group's gain is the sum over its layers of MACs x saving (MACs counted by hooks on the model).
The chosen plan is then timed for real as a package (`bench/ptq.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SpeedAnchors:
    """Whole-encoder medians (ms) of one target at `image_size`, `threads` threads, and where they come from."""

    target: str
    image_size: int
    threads: int
    fp32_ms: float
    dynamic_fc_ms: float      # every FULLY_CONNECTED dynamic int8, convolutions float (int8 package)
    weights_only_ms: float    # int8 weights, float compute (weight-only mixed package)
    fastest_ms: float         # every layer at its fastest mode (w8a8 package)
    source: str

    def to_dict(self) -> dict:
        """Manifest form."""
        return dict(self.__dict__)


# Measured with `bench/run.py` latency suite (BENCHMARKS.md: LiteRT 2.3 / XNNPACK, 1024 px, 2 threads, medians).
ANCHORS: dict[str, SpeedAnchors] = {
    "tflite": SpeedAnchors("tflite", 1024, 2, fp32_ms=446.5, dynamic_fc_ms=294.0, weights_only_ms=430.0,
                           fastest_ms=203.7, source="BENCHMARKS.md latency table (LiteRT fp32/int8/mixed/w8a8 "
                           "encoder medians, 1024 px, 2 threads, one bench run)"),
    # ExecuTorch 1.5.1 / XNNPACK, the programs as the packages build them (`converters.backends.executorch`: one
    # XNNPACK partitioner; LayerNorm by Linear and gathered attention biases everywhere; int8: edge passes);
    # no int8-weights-only mode.
    "executorch": SpeedAnchors("executorch", 1024, 2, fp32_ms=324.2, dynamic_fc_ms=189.6, weights_only_ms=324.2,
                               fastest_ms=143.6, source="encoder .pte medians of 9 interleaved rounds, 1024 px, 2 "
                               "threads: fp32; every Linear dynamic int8 with float Conv2d; every Linear/Conv2d "
                               "static int8 but the post-GELU fc2s dynamic"),
}


def layer_macs(model: torch.nn.Module, sample) -> dict[str, int]:  # noqa: ANN001 - a CalibSample
    """Multiply-accumulates of every Linear/Conv fake-quant layer of the recipe model on one sample's encoder pass."""
    from tinysam.quant.qmodel import quant_layers

    macs: dict[str, int] = {}
    hooks = []
    for name, layer in quant_layers(model).items():
        if layer.kind == "matmul":
            continue

        def hook(mod, inp, out, name=name) -> None:  # noqa: ANN001
            w = mod.weight
            per_out = w.numel() // w.shape[mod.weight_axis]
            if mod.kind == "conv_transpose2d":
                macs[name] = macs.get(name, 0) + int(inp[0].numel() // inp[0].shape[1] * w.numel())
            else:
                macs[name] = macs.get(name, 0) + int(out.numel() * per_out)

        hooks.append(layer.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model.encode_image(sample.image)
    finally:
        for h in hooks:
            h.remove()
    return macs


@dataclass(frozen=True)
class SpeedTable:
    """Per-layer savings (ms) per mode at the anchors' size, and the fp32 encoder time they start from."""

    anchors: SpeedAnchors | None
    savings: dict[str, dict[str, float]]  # layer -> mode -> ms saved vs float
    measured: bool
    note: str

    @property
    def fp32_ms(self) -> float | None:
        """fp32 encoder time, or None where speed is not measurable."""
        return self.anchors.fp32_ms if self.anchors else None

    def gain(self, modes: dict[str, str]) -> float:
        """ms saved by layer -> mode `modes` (relative MAC share where not measurable)."""
        return sum(self.savings.get(n, {}).get(m, 0.0) for n, m in modes.items())

    def latency_ms(self, modes: dict[str, str]) -> float | None:
        """Predicted encoder ms of `modes` (None where speed is not measurable)."""
        return None if self.anchors is None else self.anchors.fp32_ms - self.gain(modes)


def speed_table(target: str, q: torch.nn.Module, sample, twin: set[str], speed_note: str) -> SpeedTable:  # noqa: ANN001
    """The cost table of `target` for the recipe model `q` (`twin`: layers with twin-uniform inputs)."""
    macs = {n: v for n, v in layer_macs(q, sample).items() if n.startswith("image_encoder.")}
    total = sum(macs.values()) or 1
    anchors = ANCHORS.get(target)
    if anchors is None:  # not measurable here: relative MAC shares, 1.0 = the whole encoder's Linear/Conv work
        share = {n: v / total for n, v in macs.items()}
        return SpeedTable(None, {n: {"int8_weights": 0.0, "dynamic_int8": 0.5 * s, "static_int8": s}
                                 for n, s in share.items()}, False, speed_note)
    from tinysam.quant.qmodel import quant_layers

    kinds = {n: m.kind for n, m in quant_layers(q).items()}
    lin = sum(v for n, v in macs.items() if kinds[n] == "linear")
    fc2 = sum(v for n, v in macs.items() if n in twin)
    dyn = (anchors.fp32_ms - anchors.dynamic_fc_ms) / max(lin, 1)
    static = (anchors.fp32_ms - anchors.fastest_ms - fc2 * dyn) / max(total - fc2, 1)
    wonly = (anchors.fp32_ms - anchors.weights_only_ms) / total
    savings = {n: {"int8_weights": v * wonly, "dynamic_int8": v * dyn, "static_int8": v * static}
               for n, v in macs.items()}
    return SpeedTable(anchors, savings, True, f"cost table from whole-encoder medians at {anchors.image_size} px, "
                      f"{anchors.threads} threads ({anchors.source}), split by each layer's MACs")
