"""Everything-mode speed: dense grid vs hierarchical, reference (torch) vs runtime (ONNX fp32 package).

    .venv/bin/python bench/everything_speed.py [--image-size 512] [--repeats 3] [--student PATH | --no-student]

Main case: one TinySAM (seeded, with the mask-decoder edit the runtime tests use so masks pass the
filters) converted to an ONNX fp32 package, on a block image. Student case (when a trained default
student ships in `tinysam/weights/`, or with `--student PATH --student-size S`): the student at its
training size on a mini-SA val image, where masks are local and many. For each case it measures dense runtime (32x32 grid, 1024
prompts), hierarchical reference (`tinysam` torch) and hierarchical runtime: prompts decoded,
decoder calls and decoder seconds, median wall time of `--repeats` runs, mask count, agreement with
the dense masks (mean best-match IoU) and with the hierarchical reference (both directions, min
best-match IoU and count). Prints tables and writes `bench/results/everything_speed.json` (main case
at the top level, the student under "student_case").
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "mobile_runtime"))

PARAMS = dict(points_per_side=32, pred_iou_thresh=0.7, stability_score_thresh=0.7, stability_score_offset=1.0,
              box_nms_thresh=0.7)
HIGH = 4.0
STUDENT_PARAMS = dict(points_per_side=32, pred_iou_thresh=0.4, stability_score_thresh=0.8,  # what its masks pass
                      stability_score_offset=1.0, box_nms_thresh=0.7)
STUDENT_HIGH = 8.5  # TinySAM's default coverage threshold


def best_match_miou(masks: list[np.ndarray], targets: list[np.ndarray]) -> float:
    """Mean over `masks` of the best IoU with any of `targets` (0 when either list is empty)."""
    from evaluation.metrics import best_ious

    if not masks or not targets:
        return 0.0
    return float(np.mean(best_ious(masks, targets)))


def timed(fn, repeats: int) -> tuple[list, float, list[float]]:
    """(last result, median seconds, all seconds)."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return result, statistics.median(times), times


def min_best_match(masks: list[np.ndarray], targets: list[np.ndarray]) -> float:
    """Smallest best-match IoU of any mask in `masks` against `targets` (1.0 for two empty lists)."""
    if not masks and not targets:
        return 1.0
    if not masks or not targets:
        return 0.0
    t = np.stack(targets).reshape(len(targets), -1)
    worst = 1.0
    for m in masks:
        f = m.reshape(-1)
        inter = (t & f).sum(1)
        worst = min(worst, float(np.max(inter / np.maximum(t.sum(1) + f.sum() - inter, 1))))
    return worst


def run_case(model, info: dict, image: np.ndarray, params: dict, high: float, repeats: int, label: str) -> dict:
    """Dense runtime, hierarchical reference and hierarchical runtime on one model and image."""
    from converters.api import build_package
    from converters.options import ConvertOptions
    from mobile_runtime import EverythingGenerator, load_package
    from tinysam import SamHierarchicalMaskGenerator

    with tempfile.TemporaryDirectory() as tmp:
        pkg = build_package(model, info, "onnx", ConvertOptions(precision="fp32", out_dir=Path(tmp), verify=False)).path
        session = load_package(pkg)
        runs = {
            "dense_runtime": (EverythingGenerator(session, mode="dense", **params), "runtime"),
            "hierarchical_reference": (SamHierarchicalMaskGenerator(model, high_score_thresh=high, **params), "torch"),
            "hierarchical_runtime": (EverythingGenerator(session, mode="hierarchical", high_score_thresh=high,
                                                         **params), "runtime"),
        }
        results, masks = {}, {}
        for name, (gen, backend) in runs.items():
            recs, med, times = timed(lambda gen=gen: gen.generate(image), repeats)
            masks[name] = [r["segmentation"] for r in recs]
            stats = gen.last_stats
            results[name] = {"backend": "onnxruntime fp32" if backend == "runtime" else "torch fp32 (reference)",
                             "prompts_decoded": stats["prompts_decoded"], "decoder_calls": stats.get("decoder_calls"),
                             "decoder_seconds_last": (round(stats["decoder_seconds"], 3)
                                                      if "decoder_seconds" in stats else None),
                             "seconds_median": round(med, 3), "seconds_all": [round(t, 3) for t in times],
                             "masks": len(recs)}
    dense, ref, mine = masks["dense_runtime"], masks["hierarchical_reference"], masks["hierarchical_runtime"]
    for name in results:
        results[name]["miou_vs_dense"] = round(best_match_miou(masks[name], dense), 4)
    hr = results["hierarchical_runtime"]
    hr["miou_vs_hierarchical_reference"] = round(min(best_match_miou(mine, ref), best_match_miou(ref, mine)), 4)
    hr["min_iou_vs_hierarchical_reference"] = round(min(min_best_match(mine, ref), min_best_match(ref, mine)), 4)
    hr["same_mask_count_as_reference"] = len(mine) == len(ref)
    sec = {k: r["seconds_median"] for k, r in results.items()}
    speedup = sec["dense_runtime"] / sec["hierarchical_runtime"]
    out = {"model": label, "image_size": int(info["config"]["image_size"]), "image_hw": list(image.shape[:2]),
           "params": dict(params, high_score_thresh=high), "runs": results,
           "speedup_hierarchical_runtime_vs_dense_runtime": round(speedup, 2),
           "speedup_hierarchical_runtime_vs_hierarchical_reference": round(
               sec["hierarchical_reference"] / sec["hierarchical_runtime"], 2),
           "target_speedup": 3.0, "target_met": bool(speedup >= 3.0)}
    _print_case(out)
    return out


def _print_case(case: dict) -> None:
    print(f"\n{case['model']} at {case['image_size']} on {case['image_hw']}")
    print(f"{'run':26s} {'prompts':>8s} {'calls':>6s} {'dec s':>7s} {'median s':>9s} {'masks':>6s} {'mIoU/dense':>10s}")
    for name, r in case["runs"].items():
        dec = "-" if r["decoder_seconds_last"] is None else f"{r['decoder_seconds_last']:.2f}"
        print(f"{name:26s} {r['prompts_decoded']:8d} {str(r['decoder_calls']):>6s} {dec:>7s} "
              f"{r['seconds_median']:9.3f} {r['masks']:6d} {r['miou_vs_dense']:10.4f}")
    hr = case["runs"]["hierarchical_runtime"]
    print(f"hierarchical runtime vs dense runtime: {case['speedup_hierarchical_runtime_vs_dense_runtime']:.2f}x "
          f"(target 3x); vs torch reference: {case['speedup_hierarchical_runtime_vs_hierarchical_reference']:.2f}x; "
          f"vs reference masks: min IoU {hr['min_iou_vs_hierarchical_reference']}, "
          f"same count {hr['same_mask_count_as_reference']}")


def student_image(image_size: int) -> np.ndarray:
    """First mini-SA val image (seed 0) at `image_size`."""
    from PIL import Image

    from calibration_data.minisa import generate_minisa

    with tempfile.TemporaryDirectory() as tmp:
        split = generate_minisa(tmp, 1, image_size=image_size, seed=0, split="val", progress=False)
        path = sorted(p for p in split.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[0]
        with Image.open(path, formats=["PNG"]) as im:  # mini-SA writes PNG
            return np.asarray(im.convert("RGB"))


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the JSON-ready result."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--student", type=Path, default=None, help="trained student (default: the shipped one)")
    ap.add_argument("--student-size", type=int, default=None, help="its input size (default: the shipped one's)")
    ap.add_argument("--no-student", action="store_true", help="skip the student case")
    ap.add_argument("--no-main", action="store_true", help="skip the edited-TinySAM case (keep the old one)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "everything_speed.json")
    args = ap.parse_args(argv)

    from test_rt_vs_reference import load_oracle, structured_tinysam  # the tests' weight edit and image

    from converters.api import load_model

    machine = f"{platform.machine()} {platform.processor() or ''} threads=2".strip()
    if args.no_main and args.out.is_file():
        out = json.loads(args.out.read_text())
    else:
        model, info = structured_tinysam(args.image_size)
        s = args.image_size
        out = run_case(model, info, load_oracle().block_image(s * 3 // 4, s, seed=0), PARAMS, HIGH, args.repeats,
                       "tinysam (seeded, decoder edited as in tests/mobile_runtime/test_rt_vs_reference.py)")
    out["machine"] = machine
    from tinysam.defaults import resolve_default_weights

    student, size, trained = resolve_default_weights("tinysam", args.student, args.student_size)
    if not args.no_student and trained and student.is_file():
        size = size or 256
        model, info = load_model("tinysam", student, size)
        out["student_case"] = run_case(model, info, student_image(size), STUDENT_PARAMS, STUDENT_HIGH, args.repeats,
                                       f"trained student {student.name} at {size} (mini-SA val image 0)")
    elif not args.no_student:
        out["student_case"] = {"skipped": f"no student checkpoint ({student or 'none shipped'})"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from evaluation.writers import finite_or_none  # an undefined number is written as null, never NaN

    args.out.write_text(json.dumps(finite_or_none(out), indent=2, allow_nan=False))
    return out


if __name__ == "__main__":
    main()
