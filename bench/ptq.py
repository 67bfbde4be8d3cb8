"""PTQ / mixed-precision benchmark: size, encoder latency and mask IoU per target and precision.

    python bench/ptq.py [--image-size 1024] [--targets onnx,tflite,coreml] [--threads 2]

For each target (onnx, tflite, coreml) and precision (fp32, fp16, int8 weights, mixed, and w8a8: the
recipe's scales, built as `convert --precision w8a8` builds it, see converters/w8a8.py) it measures
- package size (and the encoder file alone),
- encoder latency: median of 3 runs, and its ratio to fp32 on the same runtime and thread count
  (CoreML runs only in the emulator here: size and IoU, no latency),
- mask IoU against the fp32 package of the same target and against the PyTorch reference, on
  held-out bundled photos (not used by the mixed plan's measurement) with the fixed parity prompts
  (`converters.parity_data`, K = 16 per image, mask input on every third prompt).
Prints a table and writes JSON (default bench/results/ptq.json). The goal row checks the issue's
target for the mixed LiteRT package: size <= 30% of fp32, >= 2x faster than fp32, IoU drop <= 0.01.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.timing import median, time_fn  # noqa: E402 - after the path fix above
from mobile_runtime.package_format import TARGETS  # noqa: E402

PRECISIONS = ("fp32", "fp16", "int8", "w8a8", "mixed")  # the order of the PTQ tables
FIRST_HELD_OUT = 8  # bundled photos 0..5 calibrate/measure the mixed plan; evaluation starts after them
K = 16
GOAL = {"size_ratio_max": 0.30, "speedup_min": 2.0, "iou_drop_max": 0.01}


def held_out_images(model, n: int) -> list:  # noqa: ANN001
    """`n` bundled photos after the calibration ones, prepared like the reference predictor."""
    from converters.parity_data import prepare_image
    from tinysam.quant.calibrate import load_calibration_images

    imgs = load_calibration_images(None, FIRST_HELD_OUT + n)[FIRST_HELD_OUT:]
    if len(imgs) < n:
        raise ValueError(f"need {FIRST_HELD_OUT + n} bundled photos, found {FIRST_HELD_OUT + len(imgs)}")
    return [prepare_image(model, f"held_out_{i}", im) for i, im in enumerate(imgs)]


def _feeds(model, spec, img) -> dict:  # noqa: ANN001
    from converters.parity_data import parity_prompts

    return parity_prompts(model, spec, K, img.original_size)


class PackageRunner:
    """Encoder + K=16 decoder of a package, opened with the mobile runtime from its manifest."""

    def __init__(self, package: Path, threads: int) -> None:
        from mobile_runtime.backends import open_model

        self.manifest = json.loads((package / "manifest.json").read_text())
        kind = self.manifest["target"]
        models = self.manifest["models"]
        self.enc_entry, self.dec_entry = models["encoder"], models["decoder"]
        self.encoder = open_model(package / self.enc_entry["file"], kind, threads, self.enc_entry.get("signature"))
        var = self.dec_entry["variants"][str(K)]
        self.decoder = open_model(package / var.get("file", self.dec_entry.get("file")), kind, threads,
                                  var.get("signature"))
        self.encoder_bytes = (package / self.enc_entry["file"]).stat().st_size if kind != "coreml" else \
            sum(p.stat().st_size for p in (package / self.enc_entry["file"]).rglob("*") if p.is_file())

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Image embedding."""
        from converters.parity import run_entry

        return run_entry(self.encoder, self.enc_entry, {"image": x})["image_embeddings"]

    def decode(self, emb: np.ndarray, feeds: dict) -> np.ndarray:
        """Low-res mask logits [K, 4, 4E, 4E]."""
        from converters.parity import run_entry

        return run_entry(self.decoder, self.dec_entry, {"image_embeddings": emb.astype(np.float32), **feeds})["low_res_masks"]


def measure(runner, model, spec, images: list, threads: int, repeats: int, latency: bool) -> dict:  # noqa: ANN001
    """Encoder latency (median of `repeats`) and low-res masks on every held-out image."""
    x0 = images[0].x.numpy()
    times = time_fn(lambda: runner.encode(x0), 1, repeats)["times_s"] if latency and repeats else []
    masks = []
    for img in images:
        emb = runner.encode(img.x.numpy())
        masks.append(runner.decode(emb, _feeds(model, spec, img)))
    return {"encoder_s": median(times) if times else None, "encoder_times_s": times, "masks": masks}


def reference_masks(model, spec, images: list) -> list[np.ndarray]:  # noqa: ANN001
    """The PyTorch reference's low-res logits for the same images and prompts."""
    import torch

    out = []
    for img in images:
        f = _feeds(model, spec, img)
        with torch.no_grad():
            emb = model.encode_image(img.x)
            args = [torch.from_numpy(f[t.name]) for t in spec.decoder_inputs(K)[1:]]
            out.append(model.decode_prompts(emb, *args)[0].numpy())
    return out


def mean_iou(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Mean mask IoU (logits > 0) over all images, prompts and mask tokens."""
    from converters.parity import mask_ious

    return float(np.concatenate([mask_ious(x, y).ravel() for x, y in zip(a, b)]).mean())


def run_ptq(model_name: str = "tinysam", image_size: int = 1024, targets: tuple[str, ...] = TARGETS,
            precisions: tuple[str, ...] = PRECISIONS, threads: int = 2, repeats: int = 3, images: int = 3,
            checkpoint: str | None = None, untrained: bool = False, mixed_plan: str = "auto",
            packages_dir: str | Path | None = None, out: str | Path | None = None, progress=None) -> dict:  # noqa: ANN001
    """Build every package, measure it, write the JSON; returns the result dict."""
    import torch

    from converters.api import build_package, dir_size, load_model
    from converters.options import ConvertOptions
    from converters.spec import ExportSpec

    say = progress or (lambda m: None)
    bad = [t for t in targets if t not in TARGETS] + [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise ValueError(f"unknown target/precision {bad}; targets {TARGETS}, precisions {PRECISIONS}")
    if image_size % 16 or image_size < 64:
        raise ValueError(f"image size must be a multiple of 16 and at least 64, got {image_size}")
    torch.set_num_threads(threads)
    if checkpoint is None and not untrained:
        from tinysam.defaults import find_default_weights

        found = find_default_weights(model_name, image_size=image_size)
        checkpoint = str(found.path) if found is not None else None
    model, info = load_model(model_name, checkpoint, image_size)
    spec = ExportSpec(model.config, "onnx", "fp32")
    held = held_out_images(model, images)
    ref = reference_masks(model, spec, held)
    tmp = tempfile.TemporaryDirectory(prefix="ptq-") if packages_dir is None else None
    root = Path(tmp.name if tmp else packages_dir)
    root.mkdir(parents=True, exist_ok=True)
    from converters.precision import resolve_mixed_plan

    mixed_plan = resolve_mixed_plan(mixed_plan, image_size)
    plan_info: dict = {"kind": mixed_plan}
    state: dict = {}

    def mixed_plan_for_package() -> tuple[dict | None, dict | None]:
        if mixed_plan != "measured":
            return None, None
        from converters.mixed_plan import PLOT_FILE, measure_mixed_plan

        for other in sorted(root.glob("*-mixed/manifest.json")):  # a plan measured for another target
            if "plan" in state:
                break
            pp = json.loads(other.read_text())["precision_plan"]
            if "measured" in pp and (other.parent / PLOT_FILE).is_file():
                state["plan"] = {k: v for k, v in pp.items() if k != "applied"}
                state["extra"] = {PLOT_FILE: (other.parent / PLOT_FILE).read_bytes()}
        if "plan" not in state:
            mp = measure_mixed_plan(model, progress=say)
            state["plan"], state["extra"] = mp.plan, {PLOT_FILE: mp.plot_png}
            plan_info.update(seconds=mp.seconds, timings=mp.timings, float_groups=mp.float_groups,
                             measured=mp.plan["measured"], groups=len(mp.sensitivity))
        return state["plan"], state["extra"]

    def qmodel():  # noqa: ANN202
        if "q" not in state:
            from converters.w8a8 import recipe_qmodel

            state["q"] = recipe_qmodel(model, progress=say)
        return state["q"]

    def build(target: str, precision: str):  # noqa: ANN202
        """(runner, size in bytes, note); packages under `root` are reused."""
        path = root / ExportSpec(model.config, target, precision).package_name
        if not (path / "manifest.json").is_file():
            p, extra = mixed_plan_for_package() if precision == "mixed" else (None, None)
            options = ConvertOptions(precision=precision, out_dir=root, verify=False,
                                     overwrite=True)  # an incomplete leftover (no manifest) is replaced
            path = build_package(model, info, target, options, say, plan=p, extra_files=extra,
                                 qmodel=qmodel() if precision == "w8a8" else None).path
        runner = PackageRunner(path, threads)
        pp = runner.manifest["precision_plan"]
        if precision == "mixed" and "measured" in pp:
            plan_info.setdefault("measured", pp["measured"])
            plan_info.setdefault("seconds", pp.get("seconds"))
            plan_info.setdefault("float_groups", [r["module"] for r in pp["keep_float"] if r.get("scope") != "activations"])
        note = {"plan": pp.get("name")}
        if precision == "w8a8":
            note["layer_counts"] = pp.get("layer_counts")
        return runner, dir_size(path), note

    rows: list[dict] = []
    try:
        for target in targets:
            fp32_masks, base = None, None
            for precision in ("fp32",) + tuple(p for p in precisions if p != "fp32"):
                if precision != "fp32" and base is None:
                    rows.append({"target": target, "precision": precision, "skipped": "no fp32 baseline"})
                    continue
                say(f"{target} {precision}")
                t0 = time.perf_counter()
                try:
                    runner, size, note = build(target, precision)
                except Exception as exc:  # noqa: BLE001 - one failing export must not lose the other rows
                    msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    rows.append({"target": target, "precision": precision, "failed": msg})
                    say(f"{target} {precision} FAILED: {msg}")
                    continue
                build_s = time.perf_counter() - t0
                emulated = target == "coreml"
                m = measure(runner, model, spec, held, threads, repeats, latency=not emulated)
                if precision == "fp32":
                    fp32_masks, base = m["masks"], {"size": size, "enc": m["encoder_s"]}
                row = {"target": target, "precision": precision, "package_bytes": size,
                       "encoder_bytes": runner.encoder_bytes, "build_s": round(build_s, 1),
                       "size_ratio_vs_fp32": size / base["size"] if base else None,
                       "encoder_latency_s": m["encoder_s"], "encoder_times_s": m["encoder_times_s"],
                       "speedup_vs_fp32": (base["enc"] / m["encoder_s"]) if base and base["enc"] and m["encoder_s"]
                       else None,
                       "mask_iou_vs_fp32": mean_iou(fp32_masks, m["masks"]) if fp32_masks else None,
                       "mask_iou_vs_torch": mean_iou(ref, m["masks"]), "latency": "emulator: not timed"
                       if emulated else f"{threads} threads", **note}
                rows.append(row)
                say(_fmt(row))
    finally:
        if tmp is not None:
            tmp.cleanup()
    result = {"model": model_name, "image_size": image_size, "trained": bool(info["trained"]),
              "checkpoint": checkpoint, "threads": threads, "repeats": repeats, "held_out_images": images,
              "prompts_per_image": K, "mixed_plan": plan_info, "rows": rows, "goal": goal_check(rows)}
    out_path = Path(out) if out else ROOT / "bench" / "results" / "ptq.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    from evaluation.writers import finite_or_none  # an undefined number is written as null, never NaN

    out_path.write_text(json.dumps(finite_or_none(result), indent=1, default=str, allow_nan=False))
    result["json"] = str(out_path)
    return result


def goal_check(rows: list[dict]) -> dict:
    """The issue's target for mixed on LiteRT: size <= 30% of fp32, >= 2x faster, IoU drop <= 0.01."""
    r = next((r for r in rows if r["target"] == "tflite" and r["precision"] == "mixed" and "package_bytes" in r), None)
    if r is None:
        return {"evaluated": False}
    drop = 1.0 - r["mask_iou_vs_fp32"]
    checks = {"size_ratio": (r["size_ratio_vs_fp32"], r["size_ratio_vs_fp32"] <= GOAL["size_ratio_max"]),
              "speedup": (r["speedup_vs_fp32"], (r["speedup_vs_fp32"] or 0) >= GOAL["speedup_min"]),
              "iou_drop": (drop, drop <= GOAL["iou_drop_max"])}
    return {"evaluated": True, "limits": GOAL, **{k: {"value": v, "met": ok} for k, (v, ok) in checks.items()},
            "met": all(ok for _, ok in checks.values())}


def _fmt(r: dict) -> str:
    if "skipped" in r or "failed" in r:
        return f"{r['target']:7s} {r['precision']:6s} " + (f"skipped: {r['skipped']}" if "skipped" in r
                                                          else f"FAILED: {r['failed']}")
    lat = f"{r['encoder_latency_s'] * 1000:8.1f}" if r["encoder_latency_s"] else "       -"
    sp = f"{r['speedup_vs_fp32']:5.2f}x" if r["speedup_vs_fp32"] else "     -"
    return (f"{r['target']:7s} {r['precision']:6s} {r['package_bytes'] / 1e6:8.2f} {r['size_ratio_vs_fp32']:6.2f} "
            f"{lat} {sp} {r['mask_iou_vs_fp32']:8.4f} {r['mask_iou_vs_torch']:8.4f}")


def table(result: dict) -> str:
    """The printed table."""
    head = "target  prec.   size MB  ratio   enc ms speedup  IoU/fp32 IoU/torch"
    lines = [head] + [_fmt(r) for r in result["rows"]]
    g = result["goal"]
    if g.get("evaluated"):
        lines.append(f"goal (tflite mixed): size ratio {g['size_ratio']['value']:.3f} "
                     f"({'ok' if g['size_ratio']['met'] else 'NOT met'}), speedup {g['speedup']['value']:.2f}x "
                     f"({'ok' if g['speedup']['met'] else 'NOT met'}), IoU drop {g['iou_drop']['value']:.4f} "
                     f"({'ok' if g['iou_drop']['met'] else 'NOT met'})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tinysam")
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--precisions", default=",".join(PRECISIONS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--images", type=int, default=None, help="held-out images (default 3; --goal: 12 mini-SA "
                    "scenes, about 60 instances, so that one flipped mask moves agreement by under 0.01)")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--untrained", action="store_true", help="ignore shipped weights")
    ap.add_argument("--mixed-plan", choices=("auto", "measured", "fixed"), default="auto")
    ap.add_argument("--packages", default=None, help="keep packages here (default: temporary); packages found "
                    "there are reused")
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/ptq.json)")
    ap.add_argument("--goal", action="store_true", help="the mixed PTQ goal instead of the table: speed at "
                    "--image-size, accuracy at --accuracy-size (bench/ptq_goal.py); targets tflite,onnx,executorch by default")
    ap.add_argument("--accuracy-size", type=int, default=256, help="--goal: the weights' trained size")
    ap.add_argument("--replan", action="store_true", help="--goal: measure the plans again on the scales saved "
                    "in --packages")
    a = ap.parse_args(argv)
    if a.goal:
        return goal_main(a)
    split = lambda s: tuple(x.strip() for x in s.split(",") if x.strip())  # noqa: E731
    res = run_ptq(a.model, a.image_size, split(a.targets), split(a.precisions), a.threads, a.repeats, a.images or 3,
                  a.checkpoint, a.untrained, a.mixed_plan, a.packages, a.out,
                  progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(table(res))
    return res


def goal_main(a: argparse.Namespace) -> dict:
    """`--goal`: run bench/ptq_goal.py and write its JSON."""
    from bench.ptq_goal import GOAL_TARGETS, run_goal
    from evaluation.writers import finite_or_none

    targets = tuple(x.strip() for x in a.targets.split(",") if x.strip())
    targets = GOAL_TARGETS if targets == TARGETS else targets
    res = run_goal(targets, a.image_size, a.accuracy_size, a.threads, a.repeats, a.images or 12, a.checkpoint,
                   a.packages or "/tmp/ptq-goal", progress=lambda m: print(m, file=sys.stderr, flush=True),
                   replan=a.replan)
    out_path = Path(a.out) if a.out else ROOT / "bench" / "results" / "ptq.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(finite_or_none(res), indent=1, default=str, allow_nan=False))
    for r in res["rows"]:
        print(f"{r['target']}: encoder fp32 {r['encoder_ms']['fp32']} ms, mixed {r['encoder_ms']['mixed']} ms "
              f"({r['checks']['speedup']['value']:.2f}x) at {res['speed_size']} px; mIoU drop "
              f"{r['checks']['iou_drop']['value']:.4f}, agreement {r['checks']['agreement']['value']:.4f} at "
              f"{res['accuracy_size']} px; size {r['checks']['size_ratio']['value']:.3f} of fp32: "
              + ("goal met" if r["met"] else "MISSED " + "; ".join(r["missed"])))
    return res


if __name__ == "__main__":
    main()
