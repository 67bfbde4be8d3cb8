"""The main job end to end: convert the default model, then use the packages as an app would.

`run_demo` converts the built-in default model to every target, loads each package with the
portable runtime (no torch on that path), segments a bundled photo from a point prompt and in
hierarchical everything mode, compares each package's mask with the PyTorch reference, and writes
overlay PNGs a person can look at. The shipped default is a demonstration model trained on synthetic
mini-SA scenes: on the real photo it makes coarse blobs, so the demo also segments one held-out mini-SA
scene (the kind of image it was trained on; point prompts and everything mode, `minisa_scene_*.png`),
and the summary labels both.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from converters.api import convert
from converters.options import ConvertOptions


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)  # masks are boolean: never NaN


def _save_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(image).save(path)


def _reference_mask(model_name: str, checkpoint: Path | None, image_size: int | None, image: np.ndarray,
                    point: np.ndarray) -> np.ndarray:
    """The PyTorch reference's best mask for one positive point."""
    from converters.api import load_model
    from tinysam.predictor import SamPredictor

    model, _ = load_model(model_name, checkpoint, image_size)
    predictor = SamPredictor(model)
    predictor.set_image(image)
    masks, iou, _ = predictor.predict(point_coords=point[None], point_labels=np.array([1]))
    return masks[int(np.argmax(iou))]


PHOTO_LABEL = "real photo: the demonstration model (trained on synthetic mini-SA scenes only) makes coarse blobs"
SCENE_LABEL = "mini-SA scene (the kind of image the model was trained on; held out from its training set)"
HELDOUT_SEED = 1000  # the held-out split's seed in bench/distill_story.py; training scenes use seed 0


def _segment_scene(session, out: Path, size: int, filters: dict, say: Callable[[str], None],
                   clicks: int = 5) -> dict:
    """One click on each of the ``clicks`` objects with the deepest interior (at its deepest pixel), and
    everything mode, on one held-out mini-SA scene; IoU of each click's mask with its object."""
    import mobile_runtime
    from calibration_data.loaders import load_image
    from calibration_data.minisa import generate_minisa
    from calibration_data.sa1b import read_sa1b_json
    from evaluation.overlay import render_overlay
    from tinysam.distill.evaluate import interior_point

    say("mini-SA scene: point prompts and everything mode (the kind of image the model was trained on)")
    split = generate_minisa(out / "minisa_scene", 1, image_size=size, seed=HELDOUT_SEED, split="val",
                            progress=False, overwrite=True)
    meta = next(j for j in sorted(split.glob("*.json")) if j.name != "dataset.json")
    info, anns = read_sa1b_json(meta)
    image = load_image(split / info["file_name"])
    objects = sorted(((interior_point(m), m) for m in (a.mask() for a in anns)), key=lambda t: -t[0][1])[:clicks]
    session.set_image(image)
    points, masks, ious = [], [], []
    for ((x, y), _depth), gt in objects:
        point = np.array([x, y], dtype=np.float32)
        pred, score, _ = session.predict(points=point[None], labels=np.array([1]))
        best = pred[int(np.argmax(score))]
        points.append(point)
        masks.append(best)
        ious.append(round(_mask_iou(best, gt), 4))
    pts = np.stack(points)
    _save_png(out / "minisa_scene_points.png", render_overlay(image, masks, pts, np.ones(len(pts), dtype=int)))
    records = mobile_runtime.EverythingGenerator(session, mode="hierarchical", **filters).generate(image)
    _save_png(out / "minisa_scene_everything.png", render_overlay(image, [r["segmentation"] for r in records]))
    return {"label": SCENE_LABEL, "image": str(split / info["file_name"]), "points": pts.tolist(),
            "files": ["minisa_scene_points.png", "minisa_scene_everything.png"], "objects": len(anns),
            "point_mask_iou_vs_ground_truth": ious, "mean_point_mask_iou": round(float(np.mean(ious)), 4),
            "everything_masks": len(records)}


def run_demo(out_dir: str | Path, model_name: str = "tinysam", checkpoint: str | Path | None = None,
             image_size: int | None = None, image_path: str | Path | None = None, targets: str = "all",
             precision: str = "fp32", progress: Callable[[str], None] | None = None, overwrite: bool = False) -> dict:
    """Convert, then segment `image_path` (default: the bundled demo photo) with every package.

    Everything is written into a temporary sibling of `out_dir` that replaces it only when complete
    (an existing `out_dir` only with `overwrite`)."""
    from calibration_data.atomic_dir import replaced_atomically

    with replaced_atomically(out_dir, overwrite, (checkpoint, image_path)) as tmp:
        summary = _run_demo(tmp, Path(out_dir), model_name, checkpoint, image_size, image_path, targets, precision,
                            progress)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
    return summary


def _run_demo(out: Path, final: Path, model_name: str, checkpoint: str | Path | None, image_size: int | None,
              image_path: str | Path | None, targets: str, precision: str,
              progress: Callable[[str], None] | None) -> dict:
    """The demo's work, written into `out` (package paths in the summary name `final`)."""
    import mobile_runtime
    from calibration_data import default_photo
    from calibration_data.loaders import load_image
    from evaluation.overlay import render_overlay
    from tinysam.defaults import find_default_weights, resolve_default_weights

    say = progress or (lambda msg: None)
    photo = Path(image_path) if image_path else default_photo()
    image = load_image(photo)  # fail on a bad image before any slow work
    shipped = find_default_weights(model_name) if checkpoint is None else None
    # a shipped student may name the everything-mode filters its masks pass (its IoU head is calibrated
    # to its own quality); otherwise SAM's defaults
    filters = dict(shipped.meta.get("everything_filters", {})) if shipped else {}
    checkpoint, image_size, trained = resolve_default_weights(model_name, checkpoint, image_size)
    if not trained:
        say("note: no trained weights for this model; the demo uses a seeded UNTRAINED model, "
            "so its masks are meaningless (the export path and the parity checks are still real)")
    results = convert(model_name, ConvertOptions(targets=targets, precision=precision, out_dir=out / "packages",
                                                 checkpoint=checkpoint, image_size=image_size), say)
    h, w = image.shape[:2]
    point = np.array([w * 0.5, h * 0.5], dtype=np.float32)
    reference = _reference_mask(model_name, checkpoint, image_size, image, point)
    _save_png(out / "reference_point.png", render_overlay(image, [reference], point[None], np.array([1])))
    summary: dict = {"model": model_name, "trained": trained, "image": str(photo), "point": point.tolist(),
                     "image_label": PHOTO_LABEL, "everything_filters": filters, "packages": []}
    # Everything mode runs on one package: the fastest CPU runtime that was built (the CoreML
    # emulator is a correctness tool, far too slow for a thousand prompts).
    everything_target = next((t for t in ("tflite", "onnx", "coreml") if t in {r.target for r in results}), None)
    for res in results:
        say(f"{res.target}: segmenting {photo.name} with the package")
        session = mobile_runtime.load_package(res.path)
        t0 = time.perf_counter()
        session.set_image(image)
        t_encode = time.perf_counter() - t0
        masks, iou, _ = session.predict(points=point[None], labels=np.array([1]))
        best = masks[int(np.argmax(iou))]
        name = res.path.name
        _save_png(out / f"{name}_point.png", render_overlay(image, [best], point[None], np.array([1])))
        records, t_everything = None, None
        if res.target == everything_target:
            say(f"{res.target}: hierarchical everything mode")
            t0 = time.perf_counter()
            records = mobile_runtime.EverythingGenerator(session, mode="hierarchical", **filters).generate(image)
            t_everything = time.perf_counter() - t0
            _save_png(out / f"{name}_everything.png", render_overlay(image, [r["segmentation"] for r in records]))
            summary["minisa_scene"] = _segment_scene(session, out, int(image_size or session.image_size), filters, say)
        entry = {"package": str(final / "packages" / name), "size_bytes": res.size_bytes, "convert_seconds": round(res.seconds, 1),
                 "parity": res.parity.get("metrics", {}), "encoder_seconds": round(t_encode, 3),
                 "point_mask_iou_vs_reference": round(_mask_iou(best, reference), 5),
                 "everything_masks": None if records is None else len(records),
                 "everything_seconds": None if t_everything is None else round(t_everything, 2)}
        summary["packages"].append(entry)
        session.close()
    return summary
