"""Soak test of the mobile runtime: one session, many predictions and everything-mode runs, no memory growth.

    python bench/soak.py [--package DIR] [--predictions 1000] [--everything 20] [--out bench/results/soak.json]

Without --package, a TinySAM ONNX package at 128 px is converted first in a child process (so this
process holds only the runtime, as an app would). After a warm-up, resident memory (RSS, psutil) is
sampled during the run; the result is printed and written as JSON. Exit code 1 if RSS grew by more
than --max-growth-mb between the post-warm-up sample and the end.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mobile_runtime import EverythingGenerator, load_package  # noqa: E402


def rss_mb() -> float:
    """Resident set size of this process in MiB, after a garbage collection."""
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def make_images(n: int = 4, seed: int = 0) -> list[np.ndarray]:
    """Photo-like synthetic RGB images of different sizes (smooth background and a few shapes)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = [(480, 640), (640, 480), (300, 300), (720, 1280)][i % 4]
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([xx * 255 / w, yy * 255 / h, np.full((h, w), 80.0)], -1)
        for _ in range(5):
            cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(20, min(h, w) // 3)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 256, 3)
        out.append(img.astype(np.uint8))
    return out


def random_prompt(rng: np.random.Generator, h: int, w: int) -> dict:
    """A point, a box, or a point plus a box, in pixels."""
    kind = rng.integers(3)
    pt = {"points": [[rng.uniform(0, w), rng.uniform(0, h)]], "labels": [1]}
    x0, y0 = rng.uniform(0, w * 0.6), rng.uniform(0, h * 0.6)
    box = {"box": [x0, y0, x0 + rng.uniform(10, w * 0.4), y0 + rng.uniform(10, h * 0.4)]}
    return pt if kind == 0 else box if kind == 1 else {**pt, **box}


def build_package(workdir: Path) -> Path:
    """Convert TinySAM (seeded, untrained) at 128 px to ONNX in a child process; returns the package."""
    cmd = [sys.executable, str(ROOT / "cli.py"), "convert", "--model", "tinysam", "--image-size", "128",
           "--target", "onnx", "--no-verify", "--out", str(workdir)]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return next(p for p in workdir.iterdir() if p.is_dir() and (p / "manifest.json").is_file())


def soak(package: Path, predictions: int, everything_runs: int, sample_every: int = 100) -> dict:
    """Run the soak on one session; returns timings and RSS samples (MiB)."""
    rng = np.random.default_rng(0)
    images = make_images()
    session = load_package(package)
    gen = EverythingGenerator(session, mode="hierarchical")
    rss_loaded = rss_mb()
    for img in images:  # warm-up: every image shape, both paths
        session.set_image(img)
        session.predict(**random_prompt(rng, *img.shape[:2]))
        session.predict_batch(points=np.array([[[5.0, 5.0]]] * 3), labels=np.ones((3, 1)))
    gen.generate(images[0])
    rss_start = rss_mb()
    samples = [{"step": "start", "rss_mb": round(rss_start, 1)}]
    t0 = time.perf_counter()
    for i in range(predictions):
        if i % sample_every == 0:
            img = images[(i // sample_every) % len(images)]
            session.set_image(img)
        masks, iou, low = session.predict(**random_prompt(rng, *img.shape[:2]), multimask_output=bool(i % 2))
        if (i + 1) % sample_every == 0:
            samples.append({"step": f"prediction {i + 1}", "rss_mb": round(rss_mb(), 1)})
    t_pred = time.perf_counter() - t0
    counts = []
    t1 = time.perf_counter()
    for j in range(everything_runs):
        counts.append(len(gen.generate(images[j % len(images)])))
        samples.append({"step": f"everything {j + 1}", "rss_mb": round(rss_mb(), 1)})
    t_every = time.perf_counter() - t1
    rss_end = rss_mb()
    values = np.array([s["rss_mb"] for s in samples])
    slope = float(np.polyfit(np.arange(len(values)), values, 1)[0]) if len(values) > 1 else 0.0
    return {
        "package": str(package), "predictions": predictions, "everything_runs": everything_runs,
        "prediction_ms_mean": round(1000 * t_pred / max(predictions, 1), 2),
        "everything_s_mean": round(t_every / max(everything_runs, 1), 3),
        "everything_masks": counts, "rss_after_load_mb": round(rss_loaded, 1),
        "rss_start_mb": round(rss_start, 1), "rss_end_mb": round(rss_end, 1),
        "rss_growth_mb": round(rss_end - rss_start, 1), "rss_max_mb": round(float(values.max()), 1),
        "rss_slope_mb_per_sample": round(slope, 4), "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package", default=None, help="Package directory or zip (default: convert TinySAM at 128).")
    ap.add_argument("--predictions", type=int, default=1000)
    ap.add_argument("--everything", type=int, default=20)
    ap.add_argument("--max-growth-mb", type=float, default=32.0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "soak.json"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tinysam-soak-") as tmp:
        package = Path(args.package) if args.package else build_package(Path(tmp))
        result = soak(package, args.predictions, args.everything)
        if not args.package:
            result["package"] = "tinysam-onnx-fp32 at 128 px (seeded, untrained; built for this run)"
    result["max_growth_mb"] = args.max_growth_mb
    result["passed"] = result["rss_growth_mb"] <= args.max_growth_mb
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from evaluation.writers import finite_or_none  # an undefined number is written as null, never NaN

    out.write_text(json.dumps(finite_or_none(result), indent=2, allow_nan=False) + "\n")
    print(f"{result['predictions']} predictions ({result['prediction_ms_mean']} ms each), "
          f"{result['everything_runs']} everything runs ({result['everything_s_mean']} s each)")
    print(f"RSS after warm-up {result['rss_start_mb']} MiB -> end {result['rss_end_mb']} MiB "
          f"(growth {result['rss_growth_mb']} MiB, max {result['rss_max_mb']} MiB): "
          f"{'OK' if result['passed'] else 'GROWTH ABOVE LIMIT'} -> {out}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
