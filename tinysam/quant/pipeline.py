"""End-to-end PTQ: build, calibrate (scale search), save, report; optional measured mixed plan."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .calibrate import load_calibration_images, make_samples
from .export_format import save_quantized
from .mixed import measured_plan, plot_sensitivity
from .qmodel import quantize_model
from .report import quant_report
from .search import SearchConfig, calibrate_model
from .sensitivity import reference_outputs


def quantize(model_name: str, out: str | Path, checkpoint: str | None = None, image_size: int | None = None,
             bits: str = "w8a8", calibration: str | None = None, images: int = 8, held_out: int = 2,
             cfg: SearchConfig | None = None, mixed: bool = False, max_iou_drop: float | None = 0.01,
             max_size_mb: float | None = None, progress: bool = True, overwrite: bool = False) -> dict:
    """Quantize `model_name` with the Q-TinySAM recipe and write the quantized model + report into `out`.

    `images` calibration images plus `held_out` more for the report come from `calibration`
    (a directory) or the bundled photos. Returns the report dict (also `out/report.json`). `out` is
    written whole into a temporary sibling and swapped in when complete; an existing `out` is refused
    unless `overwrite`.
    """
    from calibration_data.atomic_dir import check_out_path, replaced_atomically

    from ..build import build_sam

    check_out_path(out, (checkpoint, calibration))
    if Path(out).exists() and not overwrite and not (Path(out).is_dir() and not any(Path(out).iterdir())):
        raise ValueError(f"{out} already exists (pass --overwrite to replace it)")
    model = build_sam(model_name, checkpoint=checkpoint, image_size=image_size, seed=None if checkpoint else 0)
    imgs = load_calibration_images(calibration, images + held_out)
    if len(imgs) < images + max(1, held_out):
        raise ValueError(f"need {images} calibration + {max(1, held_out)} held-out images, found {len(imgs)}")
    cal = make_samples(model, imgs[:images])
    held = make_samples(model, imgs[images:])
    q = quantize_model(model, bits)
    cfg = cfg or SearchConfig()
    stats = calibrate_model(q, cal, cfg, progress=progress)
    final = Path(out)
    with replaced_atomically(final, overwrite, (checkpoint, calibration)) as tmp:
        return _write(tmp, model, q, cal, held, stats, model_name, bits, checkpoint, images, cfg, mixed,
                      max_iou_drop, max_size_mb, progress)


def _write(out: Path, model, q, cal, held, stats, model_name, bits, checkpoint, images, cfg, mixed,  # noqa: ANN001
           max_iou_drop, max_size_mb, progress) -> dict:  # noqa: ANN001
    """Measure the report (and the mixed plan) and write every output file into `out`."""
    result: dict = {"model": model_name, "bits": bits, "checkpoint": checkpoint, "calibration_images": images,
                    "search": {"method": cfg.method, "n_candidates": cfg.n_candidates, "rounds": cfg.rounds,
                               "range": [cfg.low, cfg.high]}}
    if mixed:
        mp = measured_plan(q, cal, reference_outputs(model, cal), max_iou_drop, max_size_mb, progress)
        (out / "precision_plan.json").write_text(json.dumps(mp["plan"], indent=1, allow_nan=False))
        (out / "sensitivity.json").write_text(json.dumps(mp["sensitivity"], indent=1, allow_nan=False))
        plot_sensitivity(mp["sensitivity"], mp["float_groups"], out / "sensitivity.png")
        result["plan"] = mp["plan"]
    with torch.no_grad():
        rep = quant_report(model, q, held)
    result.update(report=rep, search_stats=stats)
    save_quantized(q, out, extra={"search": result["search"], "checkpoint": checkpoint})
    (out / "report.json").write_text(json.dumps(result, indent=1, allow_nan=False))
    return result
