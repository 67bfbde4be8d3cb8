"""Mask agreement between a (partly) quantized model and its float reference, per layer group.

Agreement is the mean mask IoU over every prompt's selected masks (`select_masks` with
multimask output, so TinySAM's tokens 1..3), thresholded at the model's `mask_threshold` (0).
A mask pair that is empty in both models counts as IoU 1.
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from .calibrate import CalibSample, run_model
from .qmodel import layer_groups, quant_layers, set_quant


def mask_iou(ref: torch.Tensor, other: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Per-mask IoU of two logit tensors [..., H, W] thresholded at `threshold` -> [...]."""
    a, b = ref > threshold, other > threshold
    inter = (a & b).flatten(-2).sum(-1).float()
    union = (a | b).flatten(-2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def selected_iou(ref_low: torch.Tensor, ref_iou: torch.Tensor, low: torch.Tensor, iou: torch.Tensor) -> torch.Tensor:
    """Per prompt: IoU of the mask each model picks by its own predicted IoU (what a predictor returns
    with `multimask_output`), from multimask logits [K, M, H, W] and scores [K, M] -> [K]. A small change
    that flips the pick between two near-tied masks costs their whole difference here."""
    rows = torch.arange(low.shape[0])
    return mask_iou(ref_low[rows, ref_iou.argmax(1)], low[rows, iou.argmax(1)])


@torch.no_grad()
def reference_outputs(model: torch.nn.Module, samples: list[CalibSample]) -> list[torch.Tensor]:
    """Selected low-res mask logits of `model` for each sample."""
    outs = []
    for s in samples:
        low, iou = run_model(model, s)
        outs.append(model.select_masks(low, iou, True)[0])
    return outs


@torch.no_grad()
def mean_iou(model: torch.nn.Module, samples: list[CalibSample], refs: list[torch.Tensor]) -> float:
    """Mean mask IoU of `model` against reference logits `refs` over all samples and masks."""
    vals = [mask_iou(ref, out).flatten() for ref, out in zip(refs, reference_outputs(model, samples))]
    return float(torch.cat(vals).mean())


def group_param_counts(qmodel: torch.nn.Module, groups: dict[str, list[str]]) -> dict[str, int]:
    """Number of weight values in each group's quantized layers."""
    layers = quant_layers(qmodel)
    return {g: sum(int(layers[n].weight.numel()) for n in names if hasattr(layers[n], "weight"))
            for g, names in groups.items()}


def measure_sensitivity(qmodel: torch.nn.Module, samples: list[CalibSample], refs: list[torch.Tensor],
                        progress: bool = True) -> dict[str, dict]:
    """Quantize one layer group at a time (rest float) and measure the mask-IoU drop vs float.

    Returns {group: {"iou", "drop", "layers", "weights"}}; the model is left fully quantized.
    """
    groups = layer_groups(qmodel)
    counts = group_param_counts(qmodel, groups)
    out: dict[str, dict] = {}
    try:
        for g in tqdm(groups, desc="sensitivity", disable=not progress, unit="group"):
            set_quant(qmodel, False)
            set_quant(qmodel, True, groups[g])
            iou = mean_iou(qmodel, samples, refs)
            out[g] = {"iou": iou, "drop": 1.0 - iou, "layers": groups[g], "weights": counts[g]}
    finally:
        set_quant(qmodel, True)
    return out
