"""Accuracy suite: mIoU with 1 point, 3 points and a box per model, precision and backend.

Data: held-out mini-SA from `calibration_data.minisa.generate_minisa` (its own seed and split).
Protocols are the evaluation package's: simulated clicks (`simulate_clicks`) and box prompts
with the best of the multimask outputs by predicted IoU. Each variant is also compared with the
torch fp32 reference on the same prompts (`agreement_*`: IoU between the two masks), which is what
a quantization costs even when the weights are untrained.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

MIN_AREA_FRACTION = 0.01  # ground-truth masks smaller than 1% of the image are not prompted
HELD_OUT_SEED = 1234  # distinct from the training seeds the distillation scripts use


def load_eval_set(n_images: int, image_size: int, seed: int = HELD_OUT_SEED) -> tuple[list, str]:
    """(samples, description) of a held-out mini-SA set: `n_images` scenes of 3/4 x 1 aspect at `image_size`."""
    from calibration_data.minisa import generate_minisa
    from calibration_data.sa1b import iter_sa1b

    hw = ((image_size * 3) // 4, image_size)
    with tempfile.TemporaryDirectory(prefix="bench-minisa-") as tmp:
        split_dir = generate_minisa(Path(tmp), n_images, image_size=hw, seed=seed, split="val", progress=False)
        samples = []
        for rgb, anns in iter_sa1b(split_dir, limit=n_images):
            masks = [m for m in (a.mask() for a in anns) if m.sum() >= MIN_AREA_FRACTION * m.size]
            if masks:
                samples.append((rgb, masks))
    if not samples:
        raise ValueError("the generated mini-SA set has no readable image with a ground-truth mask")
    return samples, f"held-out mini-SA (generate_minisa seed {seed}, split val, {len(samples)} images {hw[1]}x{hw[0]})"


def box_of(mask: np.ndarray) -> np.ndarray:
    """XYXY pixel box of a non-empty mask."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float64)


def evaluate_predictor(predictor, samples: list, max_clicks: int = 3) -> dict:  # noqa: ANN001
    """Per-instance IoUs (1..max_clicks clicks, box) and the first-click and box masks."""
    from evaluation.clicks import simulate_clicks
    from evaluation.metrics import mask_iou, next_click

    clicks, boxes, first_masks, box_masks = [], [], [], []
    for rgb, masks in samples:
        predictor.set_image(rgb)
        for gt in masks:
            clicks.append(simulate_clicks(predictor, gt, max_clicks))
            c = next_click(gt, None, allow_negative=predictor.accepts_negative_points)
            m1, _ = predictor.predict_best(np.array([[c.x, c.y]], np.float64), np.array([c.label]), multimask_output=True)
            mb, _ = predictor.predict_best(box=box_of(gt), multimask_output=True)
            boxes.append(mask_iou(mb, gt))
            first_masks.append(m1)
            box_masks.append(mb)
    return {"clicks": np.asarray(clicks), "box": np.asarray(boxes), "first": first_masks, "boxm": box_masks}


def summarize(res: dict, ref: dict | None) -> dict:
    """mIoU per protocol, and agreement with the reference masks where a reference is given."""
    from evaluation.metrics import mask_iou

    c = res["clicks"]
    out = {"instances": int(len(c)), "miou_1pt": float(c[:, 0].mean()), "miou_3pt": float(c[:, 2].mean()),
           "miou_box": float(res["box"].mean())}
    if ref is not None:
        out["agreement_1pt"] = float(np.mean([mask_iou(a, b) for a, b in zip(res["first"], ref["first"])]))
        out["agreement_box"] = float(np.mean([mask_iou(a, b) for a, b in zip(res["boxm"], ref["boxm"])]))
        for k in ("1pt", "3pt", "box"):
            out[f"drop_{k}"] = float(ref_miou(ref, k) - out[f"miou_{k}"])
    return out


def ref_miou(ref: dict, key: str) -> float:
    """mIoU of the reference result for protocol `key` (1pt, 3pt, box)."""
    return float(ref["clicks"][:, 0].mean() if key == "1pt" else ref["clicks"][:, 2].mean() if key == "3pt"
                 else ref["box"].mean())


def run_accuracy(model, packages: list[Path], n_images: int, image_size: int, threads: int,  # noqa: ANN001
                 coreml_max_size: int = 256, progress=None) -> dict:  # noqa: ANN001
    """Accuracy suite over torch fp32 and every package (each opened with `load_package`)."""
    import torch

    import mobile_runtime
    from evaluation.adapter import PromptPredictor
    from tinysam.predictor import SamPredictor

    say = progress or (lambda m: None)
    torch.set_num_threads(threads)
    samples, data = load_eval_set(n_images, image_size)
    if not any(m for _, m in samples):
        raise ValueError("the accuracy set has no ground-truth instance")
    say(f"accuracy: torch fp32 on {data}")
    with torch.inference_mode():
        ref = evaluate_predictor(PromptPredictor(SamPredictor(model)), samples)
    rows = [{"backend": "torch", "precision": "fp32", **summarize(ref, ref)}]
    skipped = []
    for p in packages:
        manifest = json.loads((Path(p) / "manifest.json").read_text())
        name = Path(p).name
        if manifest["target"] == "coreml" and image_size > coreml_max_size:
            skipped.append({"package": name, "reason": f"CoreML emulator too slow above {coreml_max_size} px"})
            continue
        say(f"accuracy: {name}")
        try:
            session = mobile_runtime.load_package(p, num_threads=threads)
            res = evaluate_predictor(PromptPredictor(session), samples)
        except Exception as exc:  # noqa: BLE001 - report the broken variant, keep the rest
            skipped.append({"package": name, "reason": str(exc).splitlines()[0] if str(exc) else repr(exc)})
            continue
        from bench.latency import backend_label

        label = backend_label(manifest["target"])
        rows.append({"backend": label, "precision": manifest["precision"], "package": name, **summarize(res, ref)})
    return {"data": data, "images": len(samples), "image_size": image_size, "rows": rows, "skipped": skipped,
            "protocol": "1/3 simulated clicks (evaluation.clicks), box = GT box; best of 3 by predicted IoU"}
