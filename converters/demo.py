"""The main job end to end: convert the default model, then use the packages as an app would.

`run_demo` converts the built-in default model to every target, loads each package with the
portable runtime (no torch on that path), segments a bundled photo from a point prompt and in
hierarchical everything mode, compares each package's mask with the PyTorch reference, and writes
overlay PNGs a person can look at.
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
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


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


def run_demo(out_dir: str | Path, model_name: str = "tinysam", checkpoint: str | Path | None = None,
             image_size: int | None = None, image_path: str | Path | None = None, targets: str = "all",
             precision: str = "fp32", progress: Callable[[str], None] | None = None) -> dict:
    """Convert, then segment `image_path` (default: the bundled demo photo) with every package."""
    import mobile_runtime
    from calibration_data import default_photo
    from calibration_data.loaders import load_image
    from evaluation.overlay import render_overlay
    from tinysam.defaults import find_default_weights, resolve_default_weights

    say = progress or (lambda msg: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
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
                     "everything_filters": filters, "packages": []}
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
        entry = {"package": str(res.path), "size_bytes": res.size_bytes, "convert_seconds": round(res.seconds, 1),
                 "parity": res.parity.get("metrics", {}), "encoder_seconds": round(t_encode, 3),
                 "point_mask_iou_vs_reference": round(_mask_iou(best, reference), 5),
                 "everything_masks": None if records is None else len(records),
                 "everything_seconds": None if t_everything is None else round(t_everything, 2)}
        summary["packages"].append(entry)
        session.close()
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
