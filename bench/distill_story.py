"""The whole distillation story on the CPU (not CI; ~60 minutes on 2 idle cores at the defaults).

1. generate mini-SA (SA-1B format) train and held-out sets;
2. train a teacher (mobilesam, ground-truth losses only) at a reduced input size;
3. distill a TinySAM student from it with and without hard prompt sampling + hard mask weighting;
4. report held-out mIoU (1 click, 3 clicks, box) of teacher, both students and the untrained student;
5. save the best student as fp16 safetensors in ``tinysam/weights/`` with a JSON of command, seed
   and metrics, and write everything to ``bench/results/distill_story.json``.

Usage: ``.venv/bin/python bench/distill_story.py [--image-size 256] [--teacher-steps 300] ...``
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
    p.add_argument("--teacher-steps", type=int, default=1200)
    p.add_argument("--student-steps", type=int, default=600)
    p.add_argument("--images-per-step", type=int, default=2)
    p.add_argument("--bn-steps", type=int, default=200, help="last steps of each model with BatchNorm frozen")
    p.add_argument("--focal-weight", type=float, default=1.0,
                   help="focal:dice weight (SAM uses 20; 1 leaves the all-background plateau sooner at this scale)")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--decoder-lr", type=float, default=1e-3)
    p.add_argument("--eval-images", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def main() -> dict:
    """Run the story and return the results dict."""
    args = _args()
    import torch

    from calibration_data.minisa import generate_minisa
    from tinysam import build_sam
    from tinysam.distill import TrainConfig, evaluate, train
    from tinysam.distill.data import check_disjoint
    from tinysam.distill.export import export_fp16

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.time()
    timings: dict[str, float] = {}
    # mini-SA image k depends on (seed, k) only, not on the split name: the held-out split needs its
    # own seed, or it is a copy of the training images (check_disjoint refuses that).
    train_dir = generate_minisa(work / "minisa", args.train_images, image_size=args.image_size, seed=args.seed,
                                split="train")
    held_dir = generate_minisa(work / "minisa", args.heldout_images, image_size=args.image_size,
                               seed=args.seed + 1000, split="val")
    check_disjoint(train_dir, held_dir)
    timings["data"] = time.time() - t0
    common = dict(data=str(train_dir), image_size=args.image_size, prompts_per_image=args.prompts, lr=args.lr,
                  decoder_lr=args.decoder_lr, seed=args.seed, checkpoint_every=100, focal_weight=args.focal_weight,
                  images_per_step=args.images_per_step, log_every=10,
                  cache_dir=str(work / "teacher_cache"))

    def two_phase(name: str, steps: int, **kw) -> Path:
        """Train with per-image BatchNorm statistics (they leave the decoder's "all background"
        plateau far sooner), then ``--bn-steps`` more with BatchNorm frozen so the model is tuned to
        the running statistics it uses in eval mode. Returns the final checkpoint."""
        t = time.time()
        train(TrainConfig(out=str(work / name), steps=steps, freeze_batchnorm=False, **common, **kw))
        train(TrainConfig(out=str(work / name / "bn"), steps=args.bn_steps, freeze_batchnorm=True,
                          student_checkpoint=str(work / name / "student.pt"), **common, **kw))
        timings[name] = time.time() - t
        return work / name / "bn" / "student.pt"

    teacher_ckpt = two_phase("teacher", args.teacher_steps, stage="gt", student=args.teacher, teacher_checkpoint=None,
                             hard_prompts=False)
    variants = {
        "kd_hard": dict(hard_prompts=True, hard_mask_weighting=True),
        "kd_plain": dict(hard_prompts=False, hard_mask_weighting=False),
    }
    checkpoints = {name: two_phase(name, args.student_steps, stage="kd", teacher=args.teacher,
                                   teacher_checkpoint=str(teacher_ckpt), student="tinysam", **kw)
                   for name, kw in variants.items()}

    t = time.time()
    size = args.image_size
    results = {
        "teacher": evaluate(build_sam(args.teacher, teacher_ckpt, image_size=size), held_dir, args.eval_images),
        "untrained_student": evaluate(build_sam("tinysam", image_size=size, seed=args.seed), held_dir, args.eval_images),
    }
    for name in variants:
        results[name] = evaluate(build_sam("tinysam", checkpoints[name], image_size=size), held_dir,
                                 args.eval_images)
    timings["evaluate"] = time.time() - t
    timings["total"] = time.time() - t0

    best = max(variants, key=lambda n: results[n]["box"] + results[n]["1pt"] + results[n]["3pt"])
    weights = ROOT / "tinysam" / "weights" / f"tinysam_minisa_{size}.safetensors"
    state = torch.load(checkpoints[best], map_location="cpu")
    export_fp16(state, weights, {
        "model": "tinysam",
        "image_size": size,
        "command": " ".join([sys.executable, *sys.argv]),
        "seed": args.seed,
        "steps": args.student_steps,
        "data": f"mini-SA {args.train_images} train (seed {args.seed}), {args.heldout_images} val "
                f"(seed {args.seed + 1000}), {size}x{size}",
        "variant": best,
        "metrics": {"heldout": results[best], "untrained": results["untrained_student"],
                    "teacher": results["teacher"]},
        "note": "trained on synthetic mini-SA only; a demonstration default, not a real segmenter",
    })
    out = {"results": results, "timings_s": {k: round(v, 1) for k, v in timings.items()}, "best": best,
           "weights": str(weights.relative_to(ROOT)), "args": vars(args)}
    res_dir = ROOT / "bench" / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    (res_dir / "distill_story.json").write_text(json.dumps(out, indent=2))
    for name, r in results.items():
        print(f"{name:18s} 1pt {r['1pt']:.3f}  3pt {r['3pt']:.3f}  box {r['box']:.3f}  ({r['masks']} masks)")
    print(f"best: {best} -> {weights}; total {timings['total'] / 60:.1f} min")
    return out


if __name__ == "__main__":
    main()
