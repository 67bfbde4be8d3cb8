"""Automatic mixed-precision plan from measured per-group sensitivities.

Groups are quantized one at a time (`sensitivity.measure_sensitivity`); then the most sensitive
groups are kept in higher precision (fp16) one by one until the budget holds:
- `max_iou_drop` (default 0.01): the measured mean mask-IoU drop of the whole mixed model vs fp32;
- or `max_size_mb`: keep sensitive groups float only while the weight size stays under the budget
  (int8 = 1 byte per quantized weight, fp16 = 2 bytes per kept or unquantized weight).
The plan is in the format of `converters/precision.py`; twin-uniform layers are always listed as
fp16 for their input activation only (no int8 format expresses two ranges; weights stay int8).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .calibrate import CalibSample
from .qmodel import group_regex, layer_groups, quant_layers, set_quant
from .sensitivity import mean_iou, measure_sensitivity

PLAN_NAME = "mixed-measured-v1"


def weight_size_mb(qmodel: torch.nn.Module, float_groups: set[str]) -> float:
    """Model weight size in MB with int8 for quantized groups and fp16 for everything else."""
    groups = layer_groups(qmodel)
    layers = quant_layers(qmodel)
    int8 = sum(layers[n].weight.numel() for g, names in groups.items() if g not in float_groups
               for n in names if hasattr(layers[n], "weight"))
    total = sum(p.numel() for p in qmodel.parameters())
    return (int8 * 1 + (total - int8) * 2) / 1e6


def twin_rules(qmodel: torch.nn.Module) -> list[dict]:
    """Plan rules for layers whose activation quantizer is twin-uniform: their input stays float.

    The rules carry `"scope": "activations"`: the layer's weights are still int8 (weight-only
    exporters ignore these rules); a W8A8 export leaves the twin-uniform operand unquantized.
    """
    return [{"module": group_regex(n), "precision": "fp16", "scope": "activations",
             "reason": f"twin-uniform input activation ({m.a_kind}) has no int8 form"}
            for n, m in quant_layers(qmodel).items() if m.calibrated and m.a_kind != "uniform"]


def _apply(qmodel: torch.nn.Module, float_groups: set[str]) -> None:
    set_quant(qmodel, True)
    for g, names in layer_groups(qmodel).items():
        if g in float_groups:
            set_quant(qmodel, False, names)


def measured_plan(qmodel: torch.nn.Module, samples: list[CalibSample], refs: list[torch.Tensor],
                  max_iou_drop: float | None = 0.01, max_size_mb: float | None = None,
                  progress: bool = True) -> dict:
    """Measure sensitivities and build the mixed plan; leaves `qmodel` configured as the plan says."""
    if (max_iou_drop is None) == (max_size_mb is None):
        raise ValueError("give exactly one budget: max_iou_drop or max_size_mb")
    sens = measure_sensitivity(qmodel, samples, refs, progress)
    order = sorted(sens, key=lambda g: -sens[g]["drop"])
    kept: list[str] = []
    _apply(qmodel, set())
    drop = 1.0 - mean_iou(qmodel, samples, refs)
    history = [{"float_groups": 0, "iou_drop": drop, "size_mb": weight_size_mb(qmodel, set())}]
    for g in order:
        if max_iou_drop is not None and drop <= max_iou_drop:
            break
        if max_size_mb is not None and weight_size_mb(qmodel, set(kept) | {g}) > max_size_mb:
            break
        kept.append(g)
        _apply(qmodel, set(kept))
        drop = 1.0 - mean_iou(qmodel, samples, refs)
        history.append({"float_groups": len(kept), "iou_drop": drop, "size_mb": weight_size_mb(qmodel, set(kept))})
    plan = {
        "name": PLAN_NAME, "weights": "int8", "granularity": "per_channel", "activations": "int8",
        "keep_float": [{"module": group_regex(g), "precision": "fp16",
                        "reason": f"measured: quantized alone it drops mask IoU by {sens[g]['drop']:.4f}"}
                       for g in kept] + twin_rules(qmodel),
        "budget": {"max_iou_drop": max_iou_drop, "max_size_mb": max_size_mb},
        "measured": {"iou_drop": drop, "size_mb": weight_size_mb(qmodel, set(kept)),
                     "budget_met": (drop <= max_iou_drop) if max_iou_drop is not None else True,
                     "history": history},
    }
    return {"plan": plan, "sensitivity": sens, "float_groups": kept}


def plot_sensitivity(sens: dict[str, dict], float_groups: list[str], path: str | Path) -> Path:
    """Bar chart of the per-group IoU drop (kept-float groups highlighted) -> PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(sens)
    drops = [max(sens[g]["drop"], 1e-5) for g in names]
    colors = ["tab:red" if g in float_groups else "tab:blue" for g in names]
    fig, ax = plt.subplots(figsize=(max(6, 0.22 * len(names)), 4.5))
    ax.bar(range(len(names)), drops, color=colors)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n.replace("image_encoder.", "enc.").replace("mask_decoder.", "dec.") for n in names],
                       rotation=90, fontsize=6)
    ax.set_ylabel("mask IoU drop (group quantized alone)")
    ax.set_title("Per-group quantization sensitivity (red: kept fp16)")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
