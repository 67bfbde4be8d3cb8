"""The PTQ goal for `--precision mixed`: speed at 1024 px, accuracy at the weights' trained size, one run.

One mixed plan per target is measured as `convert` measures it (`converters.mixed_plan.PlanMeasurer` on the
shipped weights at their trained size, held-out mini-SA scenes 64..66), then for each target:
- speed: fp32 and mixed packages built at `speed_size` (the mixed one with the same plan and the recipe's
  scales), their encoders timed interleaved in this process (`threads` threads, median of `repeats`),
  with torch eager fp32 for reference;
- size: package bytes at `speed_size`, mixed / fp32 (a limit for LiteRT only, as the goal sets it);
- accuracy: fp32 and mixed packages built at `accuracy_size`, run through `bench.accuracy.run_accuracy` on
  held-out mini-SA (seed 1234, split val, scenes 0..images-1, disjoint from the plan's): mIoU drop vs torch
  fp32 on ground truth (1 click, 3 clicks, box; the worst counts) and agreement with torch fp32 masks
  (first click and box; the worst counts).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

GOAL_TARGETS = ("tflite", "onnx", "executorch")  # the targets with int8 CPU kernels and a speed table here
GOAL = {"speedup_min": {"tflite": 2.0, "onnx": 1.6, "executorch": 1.6}, "iou_drop_max": 0.01,
        "agreement_min": 0.99, "size_ratio_max": {"tflite": 0.30}, "eager_speedup_min": 5.0}
# the size limit is LiteRT's (the other targets' limits are speed and accuracy): their ratios are reported, not judged


def _verdict(met: bool | None) -> str:
    return "(no limit)" if met is None else "ok" if met else "MISSED"


def fastest_accurate(rows: list[dict]) -> dict | None:
    """The goal's last check: the fastest mixed package with agreement within the limit against torch eager fp32
    (timed in the first target's interleaved rounds); None when either is missing."""
    eager = next((r["encoder_ms"]["torch_fp32"] for r in rows if "torch_fp32" in r["encoder_ms"]), None)
    ok = [r for r in rows if r["checks"]["agreement"]["met"]]
    if eager is None or not ok:
        return None
    best = min(ok, key=lambda r: r["encoder_ms"]["mixed"])
    speedup = eager / best["encoder_ms"]["mixed"]
    return {"target": best["target"], "mixed_ms": best["encoder_ms"]["mixed"], "torch_fp32_ms": eager,
            "speedup": round(speedup, 2), "limit": f">= {GOAL['eager_speedup_min']}",
            "met": speedup >= GOAL["eager_speedup_min"],
            "note": "torch eager fp32 encoder timed in the first target's interleaved rounds"}


def _encoder_times(paths: dict[str, Path], threads: int, repeats: int, torch_model=None) -> dict[str, list[float]]:  # noqa: ANN001
    """Encoder seconds per package (and torch eager fp32 when given), interleaved round by round."""
    import torch

    from bench.ptq import PackageRunner

    runners = {k: PackageRunner(p, threads) for k, p in paths.items()}
    size = next(iter(runners.values())).enc_entry["inputs"][0]["shape"][-1]
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    for r in runners.values():
        r.encode(x)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in runners}
    if torch_model is not None:
        times["torch_fp32"] = []
        torch.set_num_threads(threads)
    for _ in range(repeats):
        for k, r in runners.items():
            t0 = time.perf_counter()
            r.encode(x)
            times[k].append(time.perf_counter() - t0)
        if torch_model is not None:
            with torch.inference_mode():
                t0 = time.perf_counter()
                torch_model.encode_image(torch.from_numpy(x))
                times["torch_fp32"].append(time.perf_counter() - t0)
    return times


def _save_plans(root: Path, plans: dict, q) -> None:  # noqa: ANN001
    """Keep the measured plans and the recipe's scales next to the packages (a rerun reuses them)."""
    import base64
    import json

    from converters.w8a8 import scales_json

    root.mkdir(parents=True, exist_ok=True)
    doc = {"targets": {t: {"plan": mp.plan, "png": base64.b64encode(mp.plot_png).decode(), "seconds": mp.seconds}
                       for t, mp in plans.items()},
           "recipe_calibration": q.recipe_calibration, "scales": scales_json(q).decode()}
    (root / "plans.json").write_text(json.dumps(doc))


def _cached_plans(root: Path, model, targets: tuple[str, ...]):  # noqa: ANN001, ANN202
    """(plans, recipe model) saved by an earlier run for every target, else (None, None)."""
    import base64
    import json

    from converters.mixed_plan import MeasuredPlan
    from converters.w8a8 import qmodel_from_scales

    path = root / "plans.json"
    if not path.is_file():
        return None, None
    doc = json.loads(path.read_text())
    if not set(targets) <= set(doc["targets"]):
        return None, None
    q = qmodel_from_scales(model, doc["scales"])
    q.recipe_calibration = doc["recipe_calibration"]
    plans = {t: MeasuredPlan(doc["targets"][t]["plan"], {}, [], doc["targets"][t]["seconds"],
                             base64.b64decode(doc["targets"][t]["png"])) for t in targets}
    return plans, q


def run_goal(targets: tuple[str, ...] = GOAL_TARGETS, speed_size: int = 1024, accuracy_size: int = 256,
             threads: int = 2, repeats: int = 5, images: int = 12, checkpoint: str | None = None,
             packages_dir: str | Path = "/tmp/ptq-goal", progress=None, replan: bool = False) -> dict:  # noqa: ANN001
    """Measure the goal; returns the JSON-ready result (see the module docstring). Plans and the recipe's
    scales saved by an earlier run in `packages_dir` are reused; `replan` measures the plans again on the
    saved scales (no new scale search)."""
    import torch

    from bench.accuracy import run_accuracy
    from converters.api import build_package, dir_size, load_model
    from converters.mixed_plan import FRONTIER_FILE, PlanMeasurer
    from converters.mixed_select import Budget
    from converters.options import ConvertOptions
    from converters.w8a8 import qmodel_from_scales, scales_json
    from tinysam.defaults import find_default_weights

    say = progress or (lambda m: None)
    torch.set_num_threads(threads)
    if checkpoint is None:
        found = find_default_weights("tinysam", image_size=accuracy_size)
        if found is None or found.image_size != accuracy_size:
            raise ValueError(f"no shipped tinysam weights trained at {accuracy_size} px")
        checkpoint = str(found.path)
    t0 = time.perf_counter()
    root = Path(packages_dir)
    model_a, info_a = load_model("tinysam", checkpoint, accuracy_size)
    plans, q_a = _cached_plans(root, model_a, targets)
    if plans is None or replan:
        measurer = PlanMeasurer(model_a, progress=say, qmodel=q_a)  # the saved recipe scales when there are
        budget = Budget.of()
        plans, q_a = {t: measurer.plan(t, budget) for t in targets}, measurer.q
        _save_plans(root, plans, q_a)
    plan_s = time.perf_counter() - t0
    model_s, info_s = load_model("tinysam", checkpoint, speed_size)
    q_s = qmodel_from_scales(model_s, scales_json(q_a))
    q_s.recipe_calibration = q_a.recipe_calibration
    rows = []
    for t in targets:
        built = {}
        for size, model, info, q in ((accuracy_size, model_a, info_a, q_a), (speed_size, model_s, info_s, q_s)):
            for prec in ("fp32", "mixed"):
                say(f"{t} {prec} at {size} px")
                opts = ConvertOptions(precision=prec, out_dir=root / str(size), verify=False, overwrite=True)
                mp = plans[t] if prec == "mixed" else None
                s0 = time.perf_counter()
                res = build_package(model, info, t, opts, say, plan=mp.plan if mp else None,
                                    extra_files={FRONTIER_FILE: mp.plot_png} if mp else None, qmodel=q if mp else None)
                built[(size, prec)] = (res.path, time.perf_counter() - s0)
        say(f"{t}: timing encoders at {speed_size} px")
        times = _encoder_times({p: built[(speed_size, p)][0] for p in ("fp32", "mixed")}, threads, repeats,
                               model_s if t == targets[0] else None)
        med = {k: float(np.median(v)) for k, v in times.items()}
        say(f"{t}: accuracy at {accuracy_size} px")
        acc = run_accuracy(model_a, [built[(accuracy_size, p)][0] for p in ("fp32", "mixed")], images, accuracy_size,
                           threads)
        mixed_acc = next(r for r in acc["rows"] if r["precision"] == "mixed")
        fp32_acc = next(r for r in acc["rows"] if r["precision"] == "fp32" and r["backend"] != "torch")
        drop = max(mixed_acc[f"drop_{k}"] for k in ("1pt", "3pt", "box"))
        agree = min(mixed_acc["agreement_1pt"], mixed_acc["agreement_box"])
        size_ratio = dir_size(built[(speed_size, "mixed")][0]) / dir_size(built[(speed_size, "fp32")][0])
        speedup = med["fp32"] / med["mixed"]
        need = GOAL["speedup_min"].get(t, 1.0)
        size_max = GOAL["size_ratio_max"].get(t)
        checks = {"speedup": {"value": speedup, "limit": f">= {need}", "met": speedup >= need},
                  "iou_drop": {"value": drop, "limit": f"<= {GOAL['iou_drop_max']}", "met": drop <= GOAL["iou_drop_max"]},
                  "agreement": {"value": agree, "limit": f">= {GOAL['agreement_min']}", "met": agree >= GOAL["agreement_min"]},
                  "size_ratio": {"value": size_ratio, "limit": f"<= {size_max}" if size_max else "none for this target",
                                 "met": size_ratio <= size_max if size_max else None}}
        plan = plans[t].plan
        rows.append({"target": t, "encoder_ms": {k: round(v * 1000, 1) for k, v in med.items()},
                     "encoder_times_ms": {k: [round(x * 1000, 1) for x in v] for k, v in times.items()},
                     "predicted_mixed_ms": plan["measured"]["latency_ms"], "plan_iou_drop": plan["measured"]["iou_drop"],
                     "plan_groups": plan["measured"]["mode_counts"], "accuracy_fp32_package": fp32_acc,
                     "accuracy_mixed_package": mixed_acc, "accuracy_torch": acc["rows"][0],
                     "package_bytes": {p: dir_size(built[(speed_size, p)][0]) for p in ("fp32", "mixed")},
                     "build_s": {f"{p}@{s}": round(built[(s, p)][1], 1) for s in (accuracy_size, speed_size)
                                 for p in ("fp32", "mixed")},
                     "checks": checks, "met": all(c["met"] is not False for c in checks.values()),
                     "missed": [f"{k} {c['value']:.4g} (needs {c['limit']})" for k, c in checks.items() if c["met"] is False]})
        say(f"{t}: " + ", ".join(f"{k} {c['value']:.4g} {_verdict(c['met'])}" for k, c in checks.items()))
    fastest = fastest_accurate(rows)
    if fastest:
        say(f"fastest package with agreement >= {GOAL['agreement_min']}: {fastest['target']} mixed, "
            f"{fastest['mixed_ms']} ms, {fastest['speedup']}x torch eager fp32 ({fastest['torch_fp32_ms']} ms)")
    root_dir = Path(__file__).resolve().parents[1]
    shown = Path(checkpoint).resolve()
    shown = str(shown.relative_to(root_dir)) if shown.is_relative_to(root_dir) else checkpoint
    return {"kind": "ptq goal (mixed)", "model": "tinysam", "checkpoint": shown, "threads": threads,
            "repeats": repeats, "speed_size": speed_size, "accuracy_size": accuracy_size,
            "accuracy_data": acc["data"] if rows else None,
            "note": f"speed measured at {speed_size} px, accuracy at the weights' trained size {accuracy_size} px",
            "plan_seconds": round(plan_s, 1), "plans": {t: plans[t].plan for t in targets}, "rows": rows,
            "limits": GOAL, "fastest_accurate": fastest,
            "goal": {"met": all(r["met"] for r in rows) and bool(fastest and fastest["met"]),
                     "missed": {r["target"]: r["missed"] for r in rows if not r["met"]}}}
