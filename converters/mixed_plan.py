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
