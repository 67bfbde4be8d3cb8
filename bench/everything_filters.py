"""How many everything-mode masks the shipped students keep on held-out mini-SA scenes (not CI).

For every shipped ``tinysam`` weights file (at its own input size): SAM's automatic mask generator
(32 x 32 point grid) on held-out mini-SA scenes (the story's held-out seed, generated at that size),
once with SAM's default filters (predicted IoU 0.88, stability 0.95) and once with the filters the
weights' description records; per filter: masks kept per scene, their mean predicted IoU, and how
well they match the ground truth (mean best IoU of a kept mask with any object, share of masks above
0.5). Writes ``bench/results/everything_filters.json``.

Usage: ``.venv/bin/python bench/everything_filters.py [--scenes 10] [--points-per-side 32]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAM_DEFAULTS = {"pred_iou_thresh": 0.88, "stability_score_thresh": 0.95}


def _best_ious(masks: list[np.ndarray], gts: list[np.ndarray]) -> list[float]:
    out = []
    for m in masks:
        out.append(max((np.logical_and(m, g).sum() / max(np.logical_or(m, g).sum(), 1) for g in gts), default=0.0))
    return [float(v) for v in out]


def _run(model, scenes, filters: dict, pps: int) -> dict:
    from tinysam.automatic_mask_generator import SamAutomaticMaskGenerator

    gen = SamAutomaticMaskGenerator(model, points_per_side=pps, **filters)
    counts, preds, best = [], [], []
    for image, gts in scenes:
        records = gen.generate(image)
        counts.append(len(records))
        preds += [r["predicted_iou"] for r in records]
        best += _best_ious([r["segmentation"] for r in records], gts)
    return {"filters": filters, "masks_per_scene": counts, "mean_masks_per_scene": float(np.mean(counts)),
            "mean_predicted_iou": float(np.mean(preds)) if preds else None,
            "mean_best_gt_iou": float(np.mean(best)) if best else None,
            "share_matching_an_object_iou_0_5": float(np.mean([b > 0.5 for b in best])) if best else None}


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=10)
    p.add_argument("--points-per-side", type=int, default=32)
    p.add_argument("--sizes", default=None, help="comma list of input sizes to measure (default: every shipped one)")
    p.add_argument("--work", default=str(ROOT / "bench" / "work" / "everything_filters"))
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "everything_filters.json"))
    args = p.parse_args()
    import torch

    from calibration_data.loaders import load_image
    from calibration_data.minisa import generate_minisa
    from tinysam import build_sam
    from tinysam.defaults import all_default_weights
    from tinysam.distill.data import list_records, read_annotations

    torch.set_grad_enabled(False)
    rows = []
    sizes = {int(v) for v in args.sizes.split(",")} if args.sizes else None
    for weights in all_default_weights("tinysam"):
        size = weights.image_size
        if sizes is not None and size not in sizes:
            continue
        split = generate_minisa(Path(args.work) / f"minisa{size}", args.scenes, image_size=size, seed=1000,
                                split="val", overwrite=True, progress=False)
        scenes = [(load_image(r.image_path), [a.mask() for a in read_annotations(r)[1]]) for r in list_records(split)]
        model = build_sam("tinysam", weights.path, image_size=size)
        relaxed = {k: weights.meta.get("everything_filters", {}).get(k, v) for k, v in SAM_DEFAULTS.items()}
        t = time.time()
        row = {"weights": weights.path.name, "image_size": size, "scenes": len(scenes),
               "objects_per_scene": float(np.mean([len(g) for _, g in scenes])), "points_per_side": args.points_per_side,
               "sam_defaults": _run(model, scenes, SAM_DEFAULTS, args.points_per_side),
               "recorded_filters": _run(model, scenes, relaxed, args.points_per_side)}
        row["seconds"] = round(time.time() - t, 1)
        rows.append(row)
        print(f"{weights.path.name}: SAM defaults {row['sam_defaults']['mean_masks_per_scene']:.1f} masks/scene, "
              f"recorded {relaxed} {row['recorded_filters']['mean_masks_per_scene']:.1f} masks/scene "
              f"({row['objects_per_scene']:.1f} objects/scene)", flush=True)
    result = {"rows": rows, "note": "held-out mini-SA scenes (seed 1000, split val) at each model's input size"}
    previous = json.loads(Path(args.out).read_text()).get("rows", []) if Path(args.out).is_file() else []
    done = {r["weights"] for r in rows}
    result["rows"] = [r for r in previous if r["weights"] not in done] + rows
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
