"""Throughput of the distillation trainer per batch size and input size (not CI).

Each row is a real ``train`` run (stage kd: TinySAM student, mobilesam teacher from a seeded random
checkpoint, teacher embeddings cached, hard prompt sampling and hard mask weighting on) on mini-SA
scenes; the numbers are the run's own throughput summary (medians over the steps after the first:
images/s, prompts/s, step time split into data / forward / backward / optimizer). ``--compile`` adds
rows with ``torch.compile`` (the first step, which compiles, is left out of the medians; its time is
reported separately).

Usage: ``.venv/bin/python bench/train_throughput.py [--sizes 128,256] [--batches 1,4,8] [--steps 4]
[--device cpu] [--precision fp32] [--compile-rows 128x4] [--out bench/results/train_throughput.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="128,256")
    p.add_argument("--batches", default="1,4,8")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--compile-rows", default="", help="comma list of SIZExBATCH rows also run with torch.compile")
    p.add_argument("--images", type=int, default=16, help="mini-SA scenes generated per size")
    p.add_argument("--work", default=str(ROOT / "bench" / "work" / "train_throughput"))
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "train_throughput.json"))
    return p.parse_args()


def _row(work: Path, data: Path, teacher: Path, size: int, batch: int, args, compile_: bool) -> dict:
    from tinysam.distill import TrainConfig, train

    name = f"s{size}_b{batch}_{args.precision}{'_compile' if compile_ else ''}"
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    cfg = TrainConfig(data=str(data), out=str(out), teacher="mobilesam", teacher_checkpoint=str(teacher),
                      image_size=size, steps=args.steps, batch_size=batch, prompts_per_image=args.prompts,
                      device=args.device, precision=args.precision, compile=compile_, fixed_shapes=compile_,
                      freeze_batchnorm=True, progress=False, cache_dir=str(work / "cache"), checkpoint_every=10**6)
    t = time.time()
    last = train(cfg)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"image_size": size, "batch_size": batch, "precision": args.precision, "compile": compile_,
            "device": args.device, "steps": args.steps, "prompts_per_image_max": args.prompts,
            "first_step_s": rows[0]["step_s"], "wall_s": round(time.time() - t, 1), **last["throughput"]}


def main() -> dict:
    """Run every row and write the JSON."""
    args = _args()
    import torch
    from safetensors.torch import save_file

    from calibration_data.minisa import generate_minisa
    from tinysam import build_sam

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    compile_rows = {tuple(int(v) for v in r.split("x")) for r in args.compile_rows.split(",") if r}
    for size in (int(s) for s in args.sizes.split(",")):
        data = generate_minisa(work / f"minisa{size}", args.images, image_size=size, seed=0, split="train",
                               overwrite=True)
        teacher = work / f"teacher{size}.safetensors"
        save_file({k: v.contiguous() for k, v in build_sam("mobilesam", image_size=size, seed=3).state_dict().items()},
                  str(teacher))
        for batch in (int(b) for b in args.batches.split(",")):
            for compile_ in (False, True) if (size, batch) in compile_rows else (False,):
                row = _row(work, data, teacher, size, batch, args, compile_)
                rows.append(row)
                print(f"{size:5d}px batch {batch:2d}{' compile' if compile_ else ''}: "
                      f"{row['images_per_s']:.2f} img/s, {row['prompts_per_s']:.1f} prompts/s, step "
                      f"{row['median_step_s']:.2f} s (data {row['median_data_s']:.3f}, forward "
                      f"{row['median_forward_s']:.2f}, backward {row['median_backward_s']:.2f})", flush=True)
    result = {"rows": rows, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "cpu_count": os.cpu_count(),
              "load_average_end": os.getloadavg(),
              "note": "kd stage, hard prompts + hard mask weighting, teacher embeddings cached; medians over the "
                      "steps after the first"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
