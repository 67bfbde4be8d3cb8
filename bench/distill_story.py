"""The whole distillation story on the CPU (not CI; ~60 minutes on 2 idle cores at the defaults).

1. generate mini-SA (SA-1B format) train and held-out sets;
2. train a teacher (mobilesam) at a reduced input size: a decoder warm-up on random shapes, then
   ground-truth losses;
3. distill a TinySAM student from it with and without hard prompt sampling + hard mask weighting;
4. report held-out mIoU (1 click, 3 clicks, box) and the prompt check (``box_cross_iou``) of teacher,
   both students and the untrained student;
5. if it follows its prompt and beats the untrained student, save the best student as fp16 safetensors in ``tinysam/weights/`` with a JSON of command, seed
   and metrics, and write everything to ``bench/results/distill_story.json``.

Usage: ``.venv/bin/python bench/distill_story.py [--image-size 256] [--teacher-steps 300] ...``

``--teacher-init`` starts the teacher from trained weights of the same architecture (e.g. the shipped
128 px model, to continue the story at 256 px within a CPU budget); ``--warmup-steps 0`` then skips
the shape warm-up. ``--variants kd_hard`` trains only the student with hard prompts + hard mask
weighting. ``--teacher-checkpoint`` reuses a teacher trained earlier (its run's config is recorded)
and ``--student-init`` starts the students from trained weights (then also evaluated at this size
as the baseline ``student_init``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default=str(ROOT / "bench" / "work" / "distill_story"))
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--train-images", type=int, default=300)
    p.add_argument("--heldout-images", type=int, default=40)
    p.add_argument("--teacher", default="mobilesam")
    p.add_argument("--teacher-steps", type=int, default=3000)
    p.add_argument("--student-steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=2, help="images per forward pass (and per step)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--teacher-init", default=None, help="initial teacher weights (skip the warm-up with --warmup-steps 0)")
    p.add_argument("--variants", default="kd_hard,kd_plain", help="students to distill (kd_hard, kd_plain)")
    p.add_argument("--teacher-checkpoint", default=None,
                   help="a teacher trained earlier (e.g. by this script, stopped after its teacher phase): skip the "
                        "warm-up and teacher training; its run folder's config.json is recorded when present")
    p.add_argument("--student-init", default=None, help="initial student weights for the distillation runs")
    p.add_argument("--keep-data", action="store_true",
                   help="reuse the mini-SA splits already in --work (same seeds and sizes give the same scenes)")
    p.add_argument("--warmup-steps", type=int, default=600, help="teacher decoder warm-up on random shapes")
    p.add_argument("--focal-weight", type=float, default=1.0,
                   help="focal:dice weight (SAM uses 20; 1 leaves the all-background plateau sooner at this scale)")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--min-mask-pixels", type=int, default=8, help="skip smaller masks (low-res frame pixels)")
    p.add_argument("--max-cross-iou", type=float, default=0.5,
                   help="ship no student whose box masks of different objects overlap more than this (prompt check)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--decoder-lr", type=float, default=1e-3)
    p.add_argument("--lr-schedule", default="cosine", choices=["constant", "cosine"])
    p.add_argument("--eval-images", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def _hardware() -> str:
    """CPU model, core count, threads and torch version of this run."""
    import os

    import torch

    from bench.report import machine_info

    return (f"{machine_info()['cpu']}, {os.cpu_count()} cores, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
            f"torch {torch.__version__} ({'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'})")


def main() -> dict:
    """Run the story and return the results dict."""
    args = _args()
    from safetensors.torch import load_file

    from calibration_data.minisa import generate_minisa
    from tinysam import build_sam
    from tinysam.distill import TrainConfig, evaluate, train
    from tinysam.distill.data import check_disjoint
    from tinysam.distill.export import export_fp16

    work = Path(args.work)
    if args.keep_data and (work / "minisa").is_dir():
        for child in work.iterdir():
            if child.name != "minisa":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    else:
        shutil.rmtree(work, ignore_errors=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t0 = time.time()
    timings: dict[str, float] = {}
    # mini-SA image k depends on (seed, k) only, not on the split name: the held-out split needs its
    # own seed, or it is a copy of the training images (check_disjoint refuses that).
    def split(name: str, n: int, seed: int) -> Path:
        path = work / "minisa" / name
        if args.keep_data and path.is_dir():
            return path
        return generate_minisa(work / "minisa", n, image_size=args.image_size, seed=seed, split=name)

    train_dir = split("train", args.train_images, args.seed)
    held_dir = split("val", args.heldout_images, args.seed + 1000)
    check_disjoint(train_dir, held_dir)
    timings["data"] = time.time() - t0
    common = dict(data=str(train_dir), image_size=args.image_size, prompts_per_image=args.prompts, lr=args.lr,
                  decoder_lr=args.decoder_lr, seed=args.seed, checkpoint_every=100, focal_weight=args.focal_weight,
                  batch_size=args.batch_size, device=args.device, precision=args.precision, log_every=10, min_mask_pixels=args.min_mask_pixels,
                  lr_schedule=args.lr_schedule,
                  cache_dir=str(work / "teacher_cache"))

    def run(name: str, steps: int, **kw) -> Path:
        """One training run with BatchNorm calibrated on 32 training images and then frozen (eval-mode
        statistics from step 0, so there is no train/eval gap). Returns its final weights."""
        t = time.time()
        train(TrainConfig(out=str(work / name), steps=steps, freeze_batchnorm=True, bn_calibration_images=32,
                          **{**common, **kw}))
        timings[name] = time.time() - t
        return work / name / "student.safetensors"

    teacher_record = None
    if args.teacher_checkpoint:
        teacher_ckpt = Path(args.teacher_checkpoint)
        run_dir = teacher_ckpt.parent
        if (run_dir / "config.json").is_file():
            teacher_record = {"config": json.loads((run_dir / "config.json").read_text())}
            if (run_dir / "throughput.json").is_file():
                teacher_record["throughput"] = json.loads((run_dir / "throughput.json").read_text())
            if (run_dir / "metrics.jsonl").is_file():
                teacher_record["last_metrics"] = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    else:
        # A fresh SAM decoder on TinyViT features learns one generic "object" mask and ignores the prompt;
        # the warm-up on random shapes first teaches it to put the mask where the prompt is.
        warm = args.teacher_init
        if args.warmup_steps > 0:
            warm = run("teacher_warmup", args.warmup_steps, stage="warmup", student=args.teacher,
                       teacher_checkpoint=None, student_checkpoint=args.teacher_init, hard_prompts=False,
                       prompts_per_image=32, lr_schedule="constant")
        # hard prompts for the teacher too: the students' multi-click prompts get the teacher's answers as targets
        teacher_ckpt = run("teacher", args.teacher_steps, stage="gt", student=args.teacher, teacher_checkpoint=None,
                           student_checkpoint=None if warm is None else str(warm), hard_prompts=True)
    known = {
        "kd_hard": dict(hard_prompts=True, hard_mask_weighting=True),
        "kd_plain": dict(hard_prompts=False, hard_mask_weighting=False),
    }
    unknown = sorted(set(args.variants.split(",")) - set(known))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(known)}")
    variants = {name: known[name] for name in args.variants.split(",")}
    checkpoints = {name: run(name, args.student_steps, stage="kd", teacher=args.teacher,
                             teacher_checkpoint=str(teacher_ckpt), student="tinysam",
                             student_checkpoint=args.student_init, **kw)
                   for name, kw in variants.items()}

    t = time.time()
    size = args.image_size
    results = {
        "teacher": evaluate(build_sam(args.teacher, teacher_ckpt, image_size=size), held_dir, args.eval_images),
        "untrained_student": evaluate(build_sam("tinysam", image_size=size, seed=args.seed), held_dir, args.eval_images),
    }
    if args.student_init:
        results["student_init"] = evaluate(build_sam("tinysam", args.student_init, image_size=size), held_dir,
                                           args.eval_images)
    for name in variants:
        results[name] = evaluate(build_sam("tinysam", checkpoints[name], image_size=size), held_dir,
                                 args.eval_images)
    timings["evaluate"] = time.time() - t
    timings["total"] = time.time() - t0

    best = max(variants, key=lambda n: results[n]["box"] + results[n]["1pt"] + results[n]["3pt"])
    r_best, r_untrained = results[best], results["untrained_student"]
    problems = []
    if r_best["box_cross_iou"] > args.max_cross_iou:
        problems.append(f"it ignores its prompt (box masks of different objects overlap {r_best['box_cross_iou']:.2f})")
    if r_best["box"] < r_untrained["box"] + 0.1:
        problems.append(f"box mIoU {r_best['box']:.3f} does not beat the untrained {r_untrained['box']:.3f} by 0.1")
    weights = ROOT / "tinysam" / "weights" / f"tinysam_minisa_{size}.safetensors"
    if not problems:
        state = load_file(str(checkpoints[best]))
        export_fp16(state, weights, {
            "model": "tinysam",
            "image_size": size,
            "command": " ".join([sys.executable, *sys.argv]),
            "seed": args.seed,
            "hardware": _hardware(),
            "started_utc": started,
            "minutes": round(timings["total"] / 60, 1),
            "teacher_init": args.teacher_init,
            "teacher_checkpoint": args.teacher_checkpoint,
            "teacher_training": teacher_record,
            "student_init": args.student_init,
            "steps": {"teacher_warmup": args.warmup_steps, "teacher": args.teacher_steps,
                      "student": args.student_steps},
            "data": f"mini-SA {args.train_images} train (seed {args.seed}), {args.heldout_images} val "
                    f"(seed {args.seed + 1000}), {size}x{size}",
            "variant": best,
            "metrics": {"heldout": r_best, "untrained": r_untrained, "teacher": results["teacher"],
                        **({"student_init": results["student_init"]} if "student_init" in results else {})},
            # its IoU head predicts about 0.3-0.5 for its real masks, so SAM's 0.88 / 0.95 keep nothing;
            # at these about a dozen masks per 128 px scene pass (tests/mobile_runtime/test_rt_everything_trained.py)
            "everything_filters": {"pred_iou_thresh": 0.4, "stability_score_thresh": 0.8},
            "note": "trained on synthetic mini-SA only; a demonstration default, not a real segmenter",
        })
    out = {"results": results, "timings_s": {k: round(v, 1) for k, v in timings.items()}, "best": best,
           "weights": None if problems else str(weights.relative_to(ROOT)), "not_shipped_because": problems,
           "args": vars(args)}
    res_dir = ROOT / "bench" / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    name = "distill_story.json" if size == 128 else f"distill_story_{size}.json"
    (res_dir / name).write_text(json.dumps(out, indent=2))
    for name, r in results.items():
        print(f"{name:18s} 1pt {r['1pt']:.3f}  3pt {r['3pt']:.3f}  box {r['box']:.3f}  "
              f"box cross-IoU {r['box_cross_iou']:.3f}  ({r['masks']} masks)")
    if problems:
        print(f"not shipped: {best}: {'; '.join(problems)}", file=sys.stderr)
        sys.exit(1)
    print(f"best: {best} -> {weights}; total {timings['total'] / 60:.1f} min")
    return out


if __name__ == "__main__":
    main()
