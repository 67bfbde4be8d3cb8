"""Hessian-guided scale search (Q-TinySAM / PTQ4ViT style) for every fake-quant layer.

Metric. For a layer with float output O and quantized output Ô the task-loss change is, to second
order, (Ô - O)^T H (Ô - O) with H the Hessian of L = KL(mask) + KL(IoU) w.r.t. O. Like PTQ4ViT we
keep only its diagonal and approximate it by squared gradients: diag(H) ~ E[g ⊙ g] with g the
gradient of the sampled-target task loss (`calibrate.fisher_loss`), which in expectation is the
Gauss-Newton (Fisher) diagonal at the float model. The sampled diagonal is noisy and exactly zero
for outputs the masks do not depend on (padding tokens), so it is damped: diag(H) + 0.1 * its mean
(ties then go to the most accurate reconstruction, not the smallest scale). So the metric is sum(g^2 * (Ô - O)^2) over the
calibration records (`observers.capture`), inputs being the float model's activations.

Search. Candidates are `n` multipliers in [0.01, 1.2] of the max-based scale of each operand
(per-channel for weights: the diagonal metric separates by output channel, so each channel takes
its own best multiplier; per-tensor for activations). The two operands are searched alternately
(weights then activations, or A then B for a matmul) for `rounds` rounds. `act_low` raises the lowest
activation multiplier (1.0: the scale never clips the calibration maximum; post-softmax fine ranges,
whose large values fall into the coarse range instead of being clipped, keep `low`); `w_low` / `w_high`
bound the weight multipliers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import tqdm

from .calibrate import CalibSample
from .observers import LayerData, capture
from .qlayers import QuantBase, QuantMatMul
from .qmodel import quant_layers
from .quantizer import candidate_ratios, channel_view, fake_quant, max_scale, max_scale_per_channel, qrange
from .twin_uniform import softmax_high_step


@dataclass(frozen=True)
class SearchConfig:
    """Settings of the scale search (defaults are the paper's)."""

    n_candidates: int = 100
    rounds: int = 3
    low: float = 0.01
    high: float = 1.2
    max_elements: int = 1 << 18
    damping: float = 0.1  # diag(H) + damping * mean(diag(H)): keeps zero-gradient outputs accurate
    method: str = "hessian"  # "hessian" (grid search) or "max" (max-based scales, no search)
    act_low: float | None = None  # lowest activation candidate (None: `low`); 1.0 never clips calibration maxima
    w_low: float | None = None  # lowest weight candidate (None: `low`); 1.0 never clips a weight
    w_high: float | None = None  # highest weight candidate (None: `high`); w_low = w_high = 1.0: max-based weights

    def validate(self) -> SearchConfig:
        """Raise ValueError on impossible settings; return self."""
        if self.method not in ("hessian", "max"):
            raise ValueError(f"search method must be 'hessian' or 'max', got {self.method!r}")
        if self.n_candidates < 1 or self.rounds < 1:
            raise ValueError("n_candidates and rounds must be >= 1")
        candidate_ratios(self.n_candidates, self.low, self.high)
        candidate_ratios(self.n_candidates, self.act_low_ratio, self.high)
        candidate_ratios(self.n_candidates, self.w_low_ratio, self.w_high_ratio)
        return self

    @property
    def w_low_ratio(self) -> float:
        """Lowest multiplier of the max-based per-channel weight scale that the search tries."""
        return self.low if self.w_low is None else self.w_low

    @property
    def w_high_ratio(self) -> float:
        """Highest multiplier of the max-based per-channel weight scale that the search tries."""
        return self.high if self.w_high is None else self.w_high

    @property
    def act_low_ratio(self) -> float:
        """Lowest multiplier of the max-based activation scale that the search tries."""
        return self.low if self.act_low is None else self.act_low


def _act_base(layer: QuantBase, xs: list[torch.Tensor]) -> torch.Tensor:
    """Max-based scale of the first operand for the layer's activation quantizer kind."""
    bits = layer.a_bits
    if layer.a_kind == "twin_softmax":  # fine range sized by the largest probability seen
        top = max(float(x.amax()) for x in xs)
        return torch.tensor(min(max(top, 1e-8) / qrange(bits)[1], softmax_high_step(bits)))
    if layer.a_kind == "twin_gelu":
        top = max(float(x.clamp_min(0).amax()) for x in xs)
        return torch.tensor(max(top, 1e-8) / qrange(bits)[1])
    return torch.stack([max_scale(x, bits) for x in xs]).amax()


def _crop(o: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    if o.shape == g.shape:
        return o
    return o[..., : g.shape[-2], : g.shape[-1]]


class _Problem:
    """A layer's calibration records in float32 with precomputed float outputs and g^2 weights."""

    def __init__(self, layer: QuantBase, data: LayerData, damping: float = 0.1) -> None:
        self.layer = layer
        self.xs = [r.inputs[0].float() for r in data.records]
        self.bs = [r.inputs[1].float() for r in data.records] if isinstance(layer, QuantMatMul) else None
        h = [r.grad.float() ** 2 for r in data.records]
        mean_h = sum(float(x.sum()) for x in h) / max(1, sum(x.numel() for x in h))
        self.h = [x + damping * mean_h + 1e-30 for x in h]
        with torch.no_grad():
            self.os = [_crop(self._op(i, self.xs[i], None), self.h[i]) for i in range(len(self.xs))]

    def _op(self, i: int, x: torch.Tensor, w_or_b: torch.Tensor | None) -> torch.Tensor:
        if self.bs is not None:
            return x @ (self.bs[i] if w_or_b is None else w_or_b[i])
        return self.layer.compute(x, self.layer.weight if w_or_b is None else w_or_b)

    @torch.no_grad()
    def error(self, xs_q: list[torch.Tensor], second: torch.Tensor | list | None, per_channel: bool) -> torch.Tensor:
        """Weighted squared output error (total, or per output channel)."""
        tot = None
        dim = self.layer.out_channel_dim
        for i, xq in enumerate(xs_q):
            d = (_crop(self._op(i, xq, second), self.h[i]) - self.os[i]) ** 2 * self.h[i]
            if per_channel:
                d = d.movedim(dim, 0).reshape(d.shape[dim], -1).sum(1)
            else:
                d = d.sum()
            tot = d if tot is None else tot + d
        return tot


def best_index(err: torch.Tensor, ratios: torch.Tensor) -> torch.Tensor:
    """Argmin over candidates (dim 0); among ties the ratio closest to 1 (max-based) wins."""
    tol = err.amin(0, keepdim=True) * (1 + 1e-6) + 1e-30
    dist = (ratios - 1.0).abs().view(-1, *([1] * (err.dim() - 1)))
    return torch.where(err <= tol, dist, torch.full_like(err, float("inf"))).argmin(0)


def _quant_inputs(layer: QuantBase, xs: list[torch.Tensor], scale: torch.Tensor) -> list[torch.Tensor]:
    return [layer.quant_act(x, scale) for x in xs]


@torch.no_grad()
def search_layer(layer: QuantBase, data: LayerData, cfg: SearchConfig) -> dict:
    """Set `layer`'s scales from its records; return {"metric_max": ..., "metric": ...}."""
    prob = _Problem(layer, data, cfg.damping)
    ratios = candidate_ratios(cfg.n_candidates, cfg.low, cfg.high)
    b_ratios = candidate_ratios(cfg.n_candidates, cfg.act_low_ratio, cfg.high)  # activations: no clipping below
    a_ratios = ratios if layer.a_kind == "twin_softmax" else b_ratios  # post-softmax: the coarse range never clips
    w_ratios = candidate_ratios(cfg.n_candidates, cfg.w_low_ratio, cfg.w_high_ratio)
    a0 = _act_base(layer, prob.xs)
    if isinstance(layer, QuantMatMul):
        b0 = torch.stack([max_scale(b, layer.a_bits) for b in prob.bs]).amax()
        def err(sa: torch.Tensor, sb: torch.Tensor) -> torch.Tensor:
            return prob.error(_quant_inputs(layer, prob.xs, sa), [layer.quant_b(b, sb) for b in prob.bs], False)
        sa, sb = a0.clone(), b0.clone()
        metric_max = float(err(sa, sb))
        if cfg.method == "hessian":
            for _ in range(cfg.rounds):
                sa = a0 * a_ratios[int(best_index(torch.stack([err(a0 * r, sb) for r in a_ratios]), a_ratios))]
                sb = b0 * b_ratios[int(best_index(torch.stack([err(sa, b0 * r) for r in b_ratios]), b_ratios))]
        layer.a_scale.copy_(sa)
        layer.b_scale.copy_(sb)
        return {"metric_max": metric_max, "metric": float(err(sa, sb))}
    w0 = max_scale_per_channel(layer.weight, layer.w_bits, layer.weight_axis)
    nd, ax = layer.weight.dim(), layer.weight_axis

    def wq(s: torch.Tensor) -> torch.Tensor:
        return fake_quant(layer.weight, channel_view(s, nd, ax), layer.w_bits)

    sa, sw = a0.clone(), w0.clone()
    metric_max = float(prob.error(_quant_inputs(layer, prob.xs, sa), wq(sw), False))
    if cfg.method == "hessian":
        for _ in range(cfg.rounds):
            xq = _quant_inputs(layer, prob.xs, sa)
            per_c = torch.stack([prob.error(xq, wq(w0 * r), True) for r in w_ratios])  # [n, C]
            sw = w0 * w_ratios[best_index(per_c, w_ratios)]
            w_fixed = wq(sw)
            tot = torch.stack([prob.error(_quant_inputs(layer, prob.xs, a0 * r), w_fixed, False) for r in a_ratios])
            sa = a0 * a_ratios[int(best_index(tot, a_ratios))]
    layer.a_scale.copy_(sa)
    layer.w_scale.copy_(sw)
    return {"metric_max": metric_max, "metric": float(prob.error(_quant_inputs(layer, prob.xs, sa), wq(sw), False))}


def calibrate_model(qmodel: torch.nn.Module, samples: list[CalibSample], cfg: SearchConfig | None = None,
                    progress: bool = True, seed: int = 0) -> dict[str, dict]:
    """Capture calibration data and search every layer's scales; turn quantization on.

    Returns per-layer search statistics. Layers that never ran on the calibration path (e.g. the
    prompt encoder's mask convs without mask prompts, TinyViT's unused classifier head) stay float.
    """
    from .qmodel import set_quant

    cfg = (cfg or SearchConfig()).validate()
    if not samples:
        raise ValueError("calibration needs at least one sample")
    big = samples[0].image.shape[-1] > 256
    data = capture(qmodel, samples, cfg.max_elements, seed, torch.float16 if big else torch.float32)
    layers = quant_layers(qmodel)
    stats: dict[str, dict] = {}
    names = [n for n in layers if n in data]
    for name in tqdm(names, desc=f"scale search ({cfg.method})", disable=not progress, unit="layer"):
        stats[name] = search_layer(layers[name], data.pop(name), cfg)
    set_quant(qmodel, True)
    return stats
