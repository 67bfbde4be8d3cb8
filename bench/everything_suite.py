"""Everything mode where the model finds objects: held-out mini-SA scenes and the bundled photos, the trained
default at its trained size, dense vs hierarchical, on the reference and on runtime packages (with the split
decoder and with the full decoder), under the filters recorded with the weights and SAM's defaults.

Per run: prompts decoded, decoder calls, wall time split into encoder / decoder (+ split-decoder prep) / mask
post-processing / NMS / RLE (runtime; the torch reference gives its wall time), mask count, and agreement
with the dense result of the same backend and filters (recall of dense masks at IoU >= 0.5, mean IoU of the
matched ones).

    nice python -m bench.everything_suite --out bench/results/everything_suite.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from evaluation.metrics import best_ious

SAM_DEFAULTS = {"pred_iou_thresh": 0.88, "stability_score_thresh": 0.95}
MATCH_IOU = 0.5


def agreement(masks: list[np.ndarray], dense: list[np.ndarray]) -> dict:
    """Recall of the `dense` masks (best IoU with any of `masks` >= MATCH_IOU) and the mean IoU of the matched."""
    if not dense:
        return {"dense_masks": 0, "recall": None, "matched_miou": None}
    if not masks:
        return {"dense_masks": len(dense), "recall": 0.0, "matched_miou": None}
    best = best_ious(dense, masks)
    hit = best >= MATCH_IOU
    return {"dense_masks": len(dense), "recall": float(hit.mean()),
            "matched_miou": float(best[hit].mean()) if hit.any() else None}


def scenes(n_minisa: int, size: int, n_photos: int) -> list[tuple[str, np.ndarray]]:
    """Held-out mini-SA scenes (generator seed 1234, split val) at `size`, then the bundled photos."""
    from PIL import Image

    from calibration_data import bundled_images
    from calibration_data.minisa import generate_minisa

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        split = tmp if n_minisa < 1 else generate_minisa(tmp, n_minisa, image_size=size, seed=1234, split="val", progress=False)
        for p in sorted(q for q in Path(split).rglob("*.png"))[:n_minisa]:
            with Image.open(p, formats=["PNG"]) as im:
                out.append((f"minisa-val/{p.name}", np.asarray(im.convert("RGB"))))
    for p in list(bundled_images())[:n_photos]:
        with Image.open(p) as im:
            out.append((f"photo/{Path(p).name}", np.asarray(im.convert("RGB"))))
    return out


def _runtime_run(session, mode: str, split: bool, filters: dict, image: np.ndarray) -> tuple[list, dict]:
    from mobile_runtime import EverythingGenerator

    session.use_split_decoder = split
    gen = EverythingGenerator(session, mode=mode, **filters)
    t0 = time.perf_counter()
    recs = gen.generate(image)
    st = dict(gen.last_stats, seconds=time.perf_counter() - t0)
    keys = ("prompts_decoded", "decoder_calls", "encoder_seconds", "prep_seconds", "decoder_seconds",
            "postprocess_seconds", "nms_seconds", "rle_seconds", "seconds")
    return [r["segmentation"] for r in recs], {k: st[k] for k in keys}


def _reference_run(model, mode: str, filters: dict, image: np.ndarray) -> tuple[list, dict]:
    from tinysam.automatic_mask_generator import SamAutomaticMaskGenerator
    from tinysam.hierarchical_mask_generator import SamHierarchicalMaskGenerator

    gen = (SamAutomaticMaskGenerator if mode == "dense" else SamHierarchicalMaskGenerator)(model, **filters)
    t0 = time.perf_counter()
    recs = gen.generate(image)
    return [r["segmentation"] for r in recs], {"seconds": time.perf_counter() - t0}


def run(targets: tuple[str, ...] = ("onnx", "tflite"), n_minisa: int = 4, n_photos: int = 2, threads: int = 2,
        reference_images: int = 2, progress=print) -> dict:  # noqa: ANN001
    import torch

    from converters.api import build_package, load_model
    from converters.options import ConvertOptions
    from mobile_runtime import load_package
    from tinysam.defaults import find_default_weights

    torch.set_num_threads(threads)
    weights = find_default_weights("tinysam", image_size=256)
    if weights is None:
        raise FileNotFoundError("no trained tinysam weights at 256 px in tinysam/weights")
    model, info = load_model("tinysam", weights.path, weights.image_size)
    recorded = dict(weights.meta.get("everything_filters") or {})
    filter_sets = {"recorded": recorded, "sam_defaults": SAM_DEFAULTS}
    images = scenes(n_minisa, weights.image_size, n_photos)
    result: dict = {"weights": weights.path.name, "reference_images": reference_images, "image_size": weights.image_size, "threads": threads,
                    "filters": filter_sets, "match_iou": MATCH_IOU, "images": [n for n, _ in images], "runs": []}
    with tempfile.TemporaryDirectory(prefix="everything-suite-") as tmp:
        sessions = {}
        for target in targets:
            progress(f"everything_suite: building the {target} fp32 package")
            pkg = build_package(model, info, target, ConvertOptions(precision="fp32", out_dir=Path(tmp) / target,
                                                                     verify=False)).path
            sessions[target] = load_package(pkg, num_threads=threads)
        for index, (name, image) in enumerate(images):
            for fname, filters in filter_sets.items():
                backends: list[tuple[str, object]] = [("reference", None)] if index < reference_images else []
                backends += [(t, s) for t, s in sessions.items()]
                for backend, session in backends:
                    variants = ([(None, None)] if session is None else [(True, "split"), (False, "full")]
                                if session is None or session.has_split_decoder else [(False, "full")])
                    dense_masks = None
                    for mode in ("dense", "hierarchical"):
                        for split, dec in variants:
                            if session is None:
                                masks, st = _reference_run(model, mode, filters, image)
                            else:
                                masks, st = _runtime_run(session, mode, split, filters, image)
                            if mode == "dense" and dense_masks is None:
                                dense_masks = masks  # agreement: against the first dense run of this backend
                            row = {"image": name, "filters": fname, "backend": backend, "decoder": dec, "mode": mode,
                                   "masks": len(masks), **st, **agreement(masks, dense_masks)}
                            result["runs"].append(row)
                            progress(f"  {name} {fname} {backend} {dec or ''} {mode}: {len(masks)} masks, "
                                     f"{st['seconds']:.2f} s")
        for s in sessions.values():
            s.close()
    result["summary"] = summarize(result["runs"])
    return result


def stage_times(package: Path, n_photos: int = 1, threads: int = 2, filters: dict | None = None,
                progress=print) -> dict:  # noqa: ANN001
    """Whole everything-mode time per image of a (large, e.g. 1024 px) package on the bundled photos,
    split by stage, dense and hierarchical, with the split decoder and with the full decoder."""
    from mobile_runtime import load_package

    session = load_package(package, num_threads=threads)
    filters = dict(filters or SAM_DEFAULTS)
    rows = []
    for name, image in scenes(0, 0, n_photos):
        for mode in ("dense", "hierarchical"):
            for split in ((True, False) if session.has_split_decoder else (False,)):
                masks, st = _runtime_run(session, mode, split, filters, image)
                rows.append({"image": name, "mode": mode, "decoder": "split" if split else "full",
                             "masks": len(masks), **st})
                progress(f"  {package.name} {name} {mode} {'split' if split else 'full'}: {st['seconds']:.1f} s")
    out = {"package": package.name, "image_size": session.image_size, "threads": threads, "filters": filters,
           "runs": rows}
    session.close()
    return out


def summarize(runs: list[dict]) -> list[dict]:
    """Per (filters, backend, decoder): dense vs hierarchical speed-up and agreement on images where dense
    finds >= 20 masks (the done-when), and over all images."""
    out = []
    groups = sorted({(r["filters"], r["backend"], r["decoder"] or "") for r in runs})
    for fname, backend, dec in groups:
        rows = [r for r in runs if (r["filters"], r["backend"], r["decoder"] or "") == (fname, backend, dec)]
        dense = {r["image"]: r for r in rows if r["mode"] == "dense"}
        hier = {r["image"]: r for r in rows if r["mode"] == "hierarchical"}
        for scope, names in (("dense >= 20 masks", [n for n, r in dense.items() if r["masks"] >= 20]),
                             ("all images", list(dense))):
            if not names:
                out.append({"filters": fname, "backend": backend, "decoder": dec, "scope": scope, "images": 0})
                continue
            d_s = sum(dense[n]["seconds"] for n in names)
            h_s = sum(hier[n]["seconds"] for n in names)
            recalls = [hier[n]["recall"] for n in names if hier[n]["recall"] is not None]
            mious = [hier[n]["matched_miou"] for n in names if hier[n]["matched_miou"] is not None]
            out.append({"filters": fname, "backend": backend, "decoder": dec, "scope": scope, "images": len(names),
                        "dense_masks": sum(dense[n]["masks"] for n in names),
                        "hierarchical_masks": sum(hier[n]["masks"] for n in names),
                        "dense_seconds": d_s, "hierarchical_seconds": h_s, "speedup": d_s / h_s,
                        "recall": float(np.mean(recalls)) if recalls else None,
                        "matched_miou": float(np.mean(mious)) if mious else None})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="onnx,tflite")
    ap.add_argument("--minisa", type=int, default=4)
    ap.add_argument("--photos", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reference-images", type=int, default=2, help="run the torch reference on the first N images")
    ap.add_argument("--stages-package", default=None,
                    help="only time everything mode by stage with this package (e.g. LiteRT fp32 at 1024 px)")
    ap.add_argument("--out", default="bench/results/everything_suite.json")
    a = ap.parse_args()
    if a.stages_package:
        res = stage_times(Path(a.stages_package), a.photos, a.threads)
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
        print(f"wrote {a.out}")
        return
    res = run(tuple(a.targets.split(",")), a.minisa, a.photos, a.threads, a.reference_images)
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
