"""Measured mixed-precision plan for `convert --precision mixed --mixed-plan measured`.

The model is fake-quantized with `tinysam.quant` on calibration images; then each layer group is
quantized alone and its mask-IoU loss against the float model is measured
(`tinysam.quant.sensitivity`), and the most sensitive groups are kept in higher precision until the
budget holds (`tinysam.quant.mixed.measured_plan`). The result is a plan in the format of
`converters.precision` plus the measured sensitivities and a bar-chart PNG for the package.

What is fake-quantized mirrors what the packages hold (`mode`):
- "weights" (default): int8 per-channel weights with max-based scales, activations at 16 bits
  (float for practical purposes): what the mixed packages of every target hold (int8 weights
  stored, float compute; `converters.backends.onnx.weight_only`, ai-edge-quantizer weight-only,
  coremltools `linear_quantize_weights`);
- "w8a8": the full Q-TinySAM recipe (Hessian-guided scale search, static int8 activations,
  twin-uniform ranges), for W8A8 exports that take the recipe's scales.

Cost (seeded TinySAM, 4 + 2 bundled photos, 1 thread on 2 busy shared cores): 78-85 s at 256
input, 930 s at 1024 (the per-group passes rerun the encoder 49 x 2 times). Hence `convert
--mixed-plan auto` (the default) measures up to 512 px and uses the fixed plan above that.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

PLOT_FILE = "sensitivity.png"
# Defaults sized so that the measurement takes about a minute at 256 and a few at 1024 on 2 cores:
# 4 calibration images for the scale search, 2 more images (9 clicks + 4 boxes each) to measure.
SEARCH_IMAGES = 4
MEASURE_IMAGES = 2
SEARCH_CANDIDATES = 32
SEARCH_ROUNDS = 1
MODES = {"weights": ("w8a16", "max"), "w8a8": ("w8a8", "hessian")}


@dataclass
class MeasuredPlan:
    """A measured plan, its sensitivities, and the PNG bytes of the sensitivity plot."""

    plan: dict
    sensitivity: dict[str, dict]
    float_groups: list[str]
    seconds: float
    plot_png: bytes = b""
    timings: dict = field(default_factory=dict)


def _check_budget(max_iou_drop: float | None, max_size_mb: float | None) -> tuple[float | None, float | None]:
    if max_iou_drop is not None and max_size_mb is not None:
        raise ValueError("give one mixed-plan budget: --max-iou-drop or --max-size, not both")
    if max_iou_drop is None and max_size_mb is None:
        max_iou_drop = 0.01
    if max_iou_drop is not None and not 0.0 <= max_iou_drop < 1.0:
        raise ValueError(f"--max-iou-drop must be in [0, 1), got {max_iou_drop}")
    if max_size_mb is not None and max_size_mb <= 0:
        raise ValueError(f"--max-size must be a positive number of MB, got {max_size_mb}")
    return max_iou_drop, max_size_mb


def measure_mixed_plan(model: torch.nn.Module, calibration: str | Path | None = None,
                       max_iou_drop: float | None = None, max_size_mb: float | None = None,
                       search_images: int = SEARCH_IMAGES, measure_images: int = MEASURE_IMAGES,
                       mode: str = "weights", progress: Callable[[str], None] | None = None) -> MeasuredPlan:
    """Build the mixed plan of `model` from measured per-group sensitivities.

    Images come from `calibration` (a directory) or the bundled photos: the first `search_images`
    calibrate the scales, the next `measure_images` measure sensitivities and the budget. Budget:
    `max_iou_drop` (default 0.01, mean mask IoU vs float) or `max_size_mb` (weight size estimate,
    int8 for quantized groups and fp16 for the rest). `mode`: see the module docstring.
    The model itself is not modified.
    """
    from tinysam.quant.calibrate import load_calibration_images, make_samples
    from tinysam.quant.mixed import measured_plan, plot_sensitivity
    from tinysam.quant.qmodel import quantize_model
    from tinysam.quant.search import SearchConfig, calibrate_model
    from tinysam.quant.sensitivity import reference_outputs

    say = progress or (lambda msg: None)
    max_iou_drop, max_size_mb = _check_budget(max_iou_drop, max_size_mb)
    if mode not in MODES:
        raise ValueError(f"unknown mixed-plan mode {mode!r}; choose one of: {', '.join(MODES)}")
    bits, method = MODES[mode]
    if search_images < 1 or measure_images < 1:
        raise ValueError("the measured mixed plan needs at least 1 search and 1 measurement image")
    start = time.perf_counter()
    imgs = load_calibration_images(calibration, search_images + measure_images)
    if len(imgs) < search_images + measure_images:
        raise ValueError(f"the measured mixed plan needs {search_images + measure_images} calibration images, "
                         f"found {len(imgs)}")
    cal = make_samples(model, imgs[:search_images])
    meas = make_samples(model, imgs[search_images:])
    cfg = SearchConfig(n_candidates=SEARCH_CANDIDATES, rounds=SEARCH_ROUNDS, method=method)
    say(f"mixed plan: {bits} scales ({method}) on {len(cal)} images")
    q = quantize_model(model, bits, twin_uniform=mode == "w8a8")
    with torch.no_grad():
        refs = reference_outputs(model, meas)
    calibrate_model(q, cal, cfg, progress=False)
    t_search = time.perf_counter() - start
    say(f"mixed plan: measuring per-group sensitivity on {len(meas)} images")
    res = measured_plan(q, meas, refs, max_iou_drop, max_size_mb, progress=False)
    seconds = time.perf_counter() - start
    plan = res["plan"]
    plan["measured_as"] = {"mode": mode, "bits": bits,
                           "meaning": "int8 weights, float activations (as the packages run)" if mode == "weights"
                           else "Q-TinySAM W8A8 fake quantization (static int8 activations)"}
    if mode == "weights":
        plan["activations"] = "float32"
    plan["calibration"] = {"source": "bundled" if calibration is None else "directory",
                           "search_images": len(cal), "measure_images": len(meas),
                           "prompts_per_image": int(meas[0].coords.shape[0]),
                           "search": {"method": cfg.method, "n_candidates": cfg.n_candidates, "rounds": cfg.rounds}}
    plan["sensitivity"] = {g: {"iou_drop": round(float(v["drop"]), 6), "weights": int(v["weights"]),
                               "layers": list(v["layers"])} for g, v in res["sensitivity"].items()}
    plan["plot"] = PLOT_FILE
    plan["seconds"] = round(seconds, 1)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        png = plot_sensitivity(res["sensitivity"], res["float_groups"], Path(tmp) / PLOT_FILE).read_bytes()
    return MeasuredPlan(plan, res["sensitivity"], res["float_groups"], seconds, png,
                        {"search_s": round(t_search, 1), "sensitivity_s": round(seconds - t_search, 1)})


# ---- measured per-target plans with per-group compute modes (float / int8 weights / dynamic / static int8)

PLAN_NAME = "mixed-measured-v2"
FRONTIER_FILE = "frontier.png"
HELD_OUT_SEED = 1234  # mini-SA held-out scenes (split val): the plan's accuracy images
PLAN_IMAGES = 6       # held-out scenes each measured plan is measured on (13 prompts each)
ISOLATED_IMAGES = 1   # scenes for each group's mode alone (only orders the search's moves)
PLAN_FIRST_SCENE = 64  # the plan's scenes are 64.. of the held-out set; the bench evaluates on 0..
CONFIRM_IMAGES = 6    # the scenes after the plan's: the chosen plan's drop measured again (`mixed_select.choose`)


def held_out_scenes(n: int, image_size: int, seed: int = HELD_OUT_SEED, first: int = 0) -> list:
    """Scenes `first`..`first+n-1` of held-out mini-SA (seed `seed`, split val, 3/4 x 1 at `image_size`), RGB uint8."""
    import tempfile

    from calibration_data.minisa import generate_minisa
    from calibration_data.sa1b import iter_sa1b

    hw = ((image_size * 3) // 4, image_size)
    with tempfile.TemporaryDirectory(prefix="mixed-minisa-") as tmp:
        split = generate_minisa(Path(tmp), first + n, image_size=hw, seed=seed, split="val", progress=False)
        return [rgb for rgb, _ in iter_sa1b(split, limit=first + n)][first:]


class PlanMeasurer:
    """The recipe model, the held-out samples and the measured drops shared by every target of one convert."""

    def __init__(self, model: torch.nn.Module, calibration: str | Path | None = None, images: int = PLAN_IMAGES,
                 progress: Callable[[str], None] | None = None, qmodel: torch.nn.Module | None = None,
                 confirm_images: int = CONFIRM_IMAGES) -> None:
        from converters.w8a8 import recipe_qmodel
        from tinysam.quant.calibrate import make_samples, run_model

        self.say = progress or (lambda msg: None)
        start = time.perf_counter()
        self.q = qmodel if qmodel is not None else recipe_qmodel(model, calibration, progress=self.say)
        self.search_s = time.perf_counter() - start
        size = model.config.image_size
        scenes = make_samples(model, held_out_scenes(images + confirm_images, size, first=PLAN_FIRST_SCENE))
        with torch.no_grad():
            refs = [model.select_masks(*run_model(model, s), True) for s in scenes]
        self.sets = {"search": (scenes[:images], refs[:images]), "confirm": (scenes[images:], refs[images:])}
        self.samples = scenes[:images]
        last = PLAN_FIRST_SCENE + images - 1
        self.accuracy = {"image_size": size, "images": len(self.samples), "prompts_per_image": int(self.samples[0].coords.shape[0]),
                         "data": f"held-out mini-SA (generate_minisa seed {HELD_OUT_SEED}, split val, scenes "
                                 f"{PLAN_FIRST_SCENE}..{last}; each group's modes alone on the first {ISOLATED_IMAGES}; "
                                 f"the chosen plan confirmed on scenes {last + 1}..{last + confirm_images})",
                         "confirm_images": confirm_images,
                         "metric": "IoU drop vs the float model, the worse of: the mean over every multimask "
                                   "token, and the mean over prompts of the mask each model picks by its "
                                   "predicted IoU (logits > 0)"}
        self.cache: dict[tuple[frozenset, int, str], float] = {}
        self.embeddings: dict[tuple[frozenset, int, str], list[torch.Tensor]] = {}
        self.evals = 0
        self.params = sum(p.numel() for p in self.q.parameters())

    def drop(self, modes: dict[str, str], scenes: int | None = None, which: str = "search") -> float:
        """Measured mask-IoU drop of layer -> mode `modes` (others float) vs the float model, on the first
        `scenes` scenes (default all) of the search's scenes, or of the confirmation scenes (`which`). Image
        embeddings are kept per encoder configuration, so plans that differ only in the decoder rerun only
        the decoder."""
        from converters.mixed_modes import apply_modes
        from tinysam.quant.sensitivity import mask_iou, selected_iou

        samples, refs = self.sets[which]
        count = len(samples) if scenes is None else max(1, min(scenes, len(samples)))
        key = frozenset((n, m) for n, m in modes.items() if m != "float")
        if (key, count, which) in self.cache:
            return self.cache[(key, count, which)]
        apply_modes(self.q, dict(key))
        enc_key = (frozenset((n, m) for n, m in key if n.startswith("image_encoder.")), count, which)
        with torch.no_grad():
            if enc_key not in self.embeddings:
                for k in [k for k in self.embeddings if k[0]]:  # keep the float encoder's and the newest only
                    del self.embeddings[k]
                self.embeddings[enc_key] = [self.q.encode_image(s.image) for s in samples[:count]]
            tokens, picked = [], []
            for s, emb, (ref_low, ref_iou) in zip(samples, self.embeddings[enc_key], refs):
                low, iou = self.q.select_masks(*self.q.decode_prompts(emb, s.coords, s.labels), True)
                tokens.append(mask_iou(ref_low, low).flatten())
                picked.append(selected_iou(ref_low, ref_iou, low, iou))
        self.cache[(key, count, which)] = 1.0 - min(float(torch.cat(tokens).mean()), float(torch.cat(picked).mean()))
        self.evals += 1
        return self.cache[(key, count, which)]

    def size_mb(self, modes: dict[str, str], float_weight_bytes: int = 4) -> float:
        """Weight size: 1 byte per int8 weight, `float_weight_bytes` per weight of a float layer of the
        plan, 4 bytes per other parameter (biases, norms, embeddings)."""
        from tinysam.quant.qmodel import quant_layers

        layers = quant_layers(self.q)
        counts = {"int8": 0, "float": 0}
        for n, m in modes.items():
            if hasattr(layers[n], "weight"):
                counts["int8" if m != "float" else "float"] += layers[n].weight.numel()
        rest = self.params - counts["int8"] - counts["float"]
        return (counts["int8"] + float_weight_bytes * counts["float"] + 4 * rest) / 1e6

    def plan(self, target: str, budget) -> MeasuredPlan:  # noqa: ANN001 - a converters.mixed_select.Budget
        """The measured plan of `target` within `budget`."""
        from converters.backends import get_backend
        from converters.mixed_modes import group_options, layer_modes
        from converters.mixed_select import Search, search_and_choose
        from converters.mixed_speed import speed_table
        from tinysam.quant.qmodel import group_regex, quant_layers

        start = time.perf_counter()
        support = get_backend(target).capabilities.mixed
        groups = group_options(self.q, support)
        twin = {n for n, m in quant_layers(self.q).items() if m.a_kind != "uniform"}
        note = support.speed if support.speed != "measured" else "no speed table for this target"
        table = speed_table(target, self.q, self.samples[0], twin, note)
        self.say(f"mixed plan ({target}): {len(groups)} groups, each mode alone on {ISOLATED_IMAGES} held-out "
                 f"scene(s), plans on {len(self.samples)}, at {self.accuracy['image_size']} px")
        isolated = {(g.name, m): (0.0 if m == "float" else self.drop(g.resolve(m), ISOLATED_IMAGES))
                    for g in groups for m in g.modes}

        def cost(choice: dict[str, str]) -> tuple[float, float, float | None]:
            modes = layer_modes(groups, choice)
            ms = table.latency_ms(modes)
            ratio = ms / table.fp32_ms if ms is not None else 1.0 - table.gain(modes)
            return ratio, self.size_mb(modes, support.float_weight_bytes), ms

        search = Search({g.name: g.modes for g in groups}, isolated, lambda c: self.drop(layer_modes(groups, c)), cost)
        picked = search_and_choose(search, budget, lambda p: self.drop(layer_modes(groups, dict(p.choice)), which="confirm"))
        chosen, points = picked.chosen, picked.points
        modes = layer_modes(groups, dict(chosen.choice))
        gains = {g.name: {m: {"iou_drop_alone": round(isolated[(g.name, m)], 6),
                              "gain_ms" if table.measured else "gain_share": round(table.gain(g.resolve(m)), 4)}
                          for m in g.modes} for g in groups}
        plan = {"name": PLAN_NAME, "weights": "int8", "granularity": "per_channel",
                "activations": "per group: " + ", ".join(f"{m} {c}" for m, c in chosen.to_dict()["mode_counts"].items()),
                "keep_float": [{"module": group_regex(g), "precision": "fp32", "reason": "float in the measured plan"}
                               for g, m in chosen.choice.items() if m == "float"],
                "groups": dict(chosen.choice), "layer_modes": modes,
                "budget": {"kind": budget.kind, "limit": budget.limit},
                "measured": {**chosen.to_dict(), "budget_met": budget.fits(chosen) and (
                    chosen.confirm_drop is None or chosen.confirm_drop <= budget.limit + 1e-12)},
                "rejected": [p.to_dict() for p in picked.rejected],
                "frontier": [p.to_dict() for p in picked.frontier],
                "plans": [p.to_dict() for p in points],
                "group_costs": gains,
                "accuracy": self.accuracy,
                "speed": {"measured": table.measured, "note": table.note,
                          "anchors": table.anchors.to_dict() if table.anchors else None,
                          "meaning": "latency_ratio = predicted encoder latency / fp32 at the anchors' size"
                          if table.measured else "latency_ratio = 1 - share of the encoder's Linear/Conv MACs run in int8"},
                "plot": FRONTIER_FILE,
                "seconds": round(time.perf_counter() - start + self.search_s, 1),
                "evaluations": self.evals}
        from converters.mixed_modes import set_weight_scales

        set_weight_scales(self.q, {})  # back to the recipe's scales
        png = plot_frontier(points, picked, target, table.measured)
        return MeasuredPlan(plan, gains, [g for g, m in chosen.choice.items() if m == "float"], plan["seconds"], png,
                            {"search_s": round(self.search_s, 1), "plan_s": round(time.perf_counter() - start, 1)})


def plot_frontier(points: list, picked, target: str, measured: bool) -> bytes:  # noqa: ANN001
    """PNG: every measured plan as a point (encoder latency vs IoU drop), the frontier and the chosen plan."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from converters.mixed_select import BACK

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for back, style in ((False, {"color": "tab:blue", "label": "measured plans (search)"}),
                        (True, {"facecolors": "none", "edgecolors": "tab:green", "label": "measured plans (backward pass)"})):
        pts = [p for p in points if p.move.endswith(BACK) == back]
        if pts:
            ax.scatter([p.latency_ms if measured else p.latency_ratio for p in pts], [p.iou_drop for p in pts], s=14, **style)
    fr = picked.frontier
    ax.plot([p.latency_ms if measured else p.latency_ratio for p in fr], [p.iou_drop for p in fr],
            color="tab:orange", lw=1, label="frontier")
    c = picked.chosen
    ax.scatter([c.latency_ms if measured else c.latency_ratio], [c.iou_drop], s=60, marker="*", color="tab:red",
               label="chosen", zorder=3)
    if picked.budget.kind == "iou_drop":
        ax.axhline(picked.budget.limit, color="gray", ls="--", lw=0.8)
    ax.set_xlabel("encoder latency, ms (cost table at 1024 px)" if measured else "share of encoder MACs left float")
    ax.set_ylabel("mask IoU drop vs float (held-out, trained size)")
    ax.set_title(f"{target}: mixed plans")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    from PIL import Image

    small = io.BytesIO()  # a flat-colour plot: a 64-colour palette looks the same at a third of the bytes
    Image.open(io.BytesIO(buf.getvalue())).convert("RGB").quantize(colors=64).save(small, "PNG", optimize=True)
    return small.getvalue()


def _point_line(p: dict, speed: dict) -> str:
    counts = ", ".join(f"{n} {m}" for m, n in sorted(p["mode_counts"].items()))
    lat = (f"encoder {p['latency_ms']:.0f} ms predicted at {speed['anchors']['image_size']} px "
           f"({1 / p['latency_ratio']:.2f}x fp32)" if speed["measured"] and p["latency_ms"] is not None
           else f"int8 share of encoder MACs {1 - p['latency_ratio']:.2f}")
    confirm = f" (confirmation scenes {p['confirm_iou_drop']:.4f})" if "confirm_iou_drop" in p else ""
    return f"{lat}, mask IoU drop {p['iou_drop']:.4f}{confirm}, weights {p['size_mb']:.1f} MB ({counts} groups)"


def plan_summary(plan: dict, target: str) -> list[str]:
    """Lines for the convert command: the chosen plan, how it was measured, the best rejected alternatives."""
    if plan.get("name") != PLAN_NAME:
        return []
    speed, acc = plan["speed"], plan["accuracy"]
    out = [f"{target} mixed plan ({plan['budget']['kind'].replace('_', ' ')} <= {plan['budget']['limit']:g}): "
           + _point_line(plan["measured"], speed),
           f"  accuracy: {acc['data']}, {acc['image_size']} px, {acc['images']} scenes x {acc['prompts_per_image']} prompts; "
           f"speed: {speed['note'] if not speed['measured'] else speed['note'].split(' (')[0]}"]
    if not plan["measured"]["budget_met"]:
        out.append("  no measured plan held the budget on the confirmation scenes too: this one came closest")
    out += ["  rejected: " + _point_line(p, speed) + f" [{p['move']}]" for p in plan.get("rejected", [])]
    return out
