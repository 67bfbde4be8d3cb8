"""The trainer's GPU check, in one short script (needs CUDA; ``--dry-run`` rehearses it on the CPU).

1. smoke: 30 ``gt`` steps at 256 px, batch 8, bf16: the loss falls;
2. throughput at 1024 px, bf16, batch 1 / 8 / 32 (``kd`` stage, hard prompts + hard mask weighting,
   up to 64 prompts per image, DataLoader workers, cached teacher embeddings): the trainer's own
   images/s and step split, next to the raw model step (student encoder + decoder forward and backward
   on random data with the same prompts per image, no data loading, prompt sampling or teacher) and
   their ratio;
3. torchrun over every visible GPU with nccl (a one-GPU torchrun still runs the nccl all-reduce):
   ranks end with identical weights.

Every phase appends to ``bench/results/gpu_train_check.json`` as it finishes, so a timeout keeps what
ran. Usage: ``.venv/bin/python bench/gpu_train_check.py`` (about 5-8 minutes on one H200; no network).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="CPU rehearsal at tiny sizes (gloo, fp32/bf16)")
    p.add_argument("--work", default=str(ROOT / "bench" / "work" / "gpu_train_check"))
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu_train_check.json"))
    p.add_argument("--batches", default=None, help="throughput batch sizes (default 1,8,32)")
    p.add_argument("--worker", nargs=3, metavar=("DATA", "OUT", "SIZE"), help=argparse.SUPPRESS)
    return p.parse_args()


class Report:
    """The JSON result file, rewritten after every phase."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict = {"started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def add(self, key: str, value) -> None:
        self.data[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2) + "\n")
        print(f"[{key}] {json.dumps(value)[:400]}", flush=True)


def _env(device: str) -> dict:
    import torch

    info = {"torch": torch.__version__, "device": device, "cuda": torch.cuda.is_available(), "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        info.update(gpus=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
                    bf16=torch.cuda.is_bf16_supported())
    return info


def _teacher(work: Path, size: int) -> Path:
    from safetensors.torch import save_file

    from tinysam import build_sam

    path = work / f"teacher_{size}.safetensors"
    if not path.exists():
        state = build_sam("mobilesam", image_size=size, seed=3).state_dict()
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def smoke(work: Path, data: Path, device: str, precision: str, size: int, batch: int, steps: int) -> dict:
    from tinysam.distill import TrainConfig, train

    out = work / "smoke"
    shutil.rmtree(out, ignore_errors=True)
    train(TrainConfig(data=str(data), out=str(out), stage="gt", student="tinysam", image_size=size, steps=steps,
                      batch_size=batch, prompts_per_image=16, device=device, precision=precision, lr=1e-3,
                      decoder_lr=1e-3, focal_weight=1.0, hard_prompts=False, box_fraction=1.0, progress=False,
                      num_workers=4, checkpoint_every=10**6))
    losses = [r["total"] for r in _rows(out)]
    first, last = statistics.mean(losses[:5]), statistics.mean(losses[-5:])
    return {"steps": steps, "image_size": size, "batch_size": batch, "precision": precision,
            "loss_first5": first, "loss_last5": last, "loss_falls": last < first}


def raw_step(size: int, batch: int, prompts: int, device: str, precision: str, repeats: int = 5) -> dict:
    """Student encoder + decoder forward/backward on random data: the model's own step time."""
    import torch

    from tinysam import build_sam
    from tinysam.distill.device import Precision, resolve_device, synchronize

    dev = resolve_device(device)
    model = build_sam("tinysam", image_size=size, seed=0).to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    prec = Precision(precision, dev)
    x = torch.randn(batch, 3, size, size, device=dev)
    coords = torch.rand(batch * prompts, 3, 2, device=dev) * size
    labels = torch.tensor([[1.0, 1.0, -1.0]], device=dev).expand(batch * prompts, -1).contiguous()
    image_of = torch.arange(batch, device=dev).repeat_interleave(prompts)
    times = []
    for i in range(repeats + 2):
        synchronize(dev)
        t = time.perf_counter()
        with prec.autocast():
            emb = model.encode_image(x)
            low, iou = model.decode_prompts(emb[image_of], coords, labels)
        loss = low.float().sigmoid().mean() + iou.float().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        synchronize(dev)
        if i >= 2:
            times.append(time.perf_counter() - t)
    step = statistics.median(times)
    return {"prompts_per_image": prompts, "median_step_s": round(step, 4), "images_per_s": round(batch / step, 3)}


def throughput(work: Path, data: Path, device: str, precision: str, size: int, batch: int, steps: int,
               prompts: int, workers: int) -> dict:
    from tinysam.distill import TrainConfig, train

    out = work / f"tp_{size}_{batch}"
    shutil.rmtree(out, ignore_errors=True)
    try:
        last = train(TrainConfig(data=str(data), out=str(out), teacher="mobilesam",
                                 teacher_checkpoint=str(_teacher(work, size)), image_size=size, steps=steps,
                                 batch_size=batch, prompts_per_image=prompts, device=device, precision=precision,
                                 num_workers=workers, prefetch_factor=4, freeze_batchnorm=True, progress=False,
                                 cache_dir=str(work / "cache"), cache_batch_size=16, checkpoint_every=10**6))
    except RuntimeError as exc:  # out of memory at the largest batch is a result, not a crash
        if "out of memory" not in str(exc).lower():
            raise
        import torch

        torch.cuda.empty_cache()
        return {"batch_size": batch, "error": "out of memory"}
    rows = _rows(out)[1:] or _rows(out)
    mean_prompts = round(sum(r["prompts"] for r in rows) / max(sum(r["images"] for r in rows), 1))
    raw_same = raw_step(size, batch, max(mean_prompts, 1), device, precision)
    raw_64 = raw_step(size, batch, prompts, device, precision) if mean_prompts != prompts else raw_same
    return {"image_size": size, "batch_size": batch, "precision": precision, "trainer": last["throughput"],
            "trainer_prompts_per_image": mean_prompts, "raw_same_prompts": raw_same, f"raw_{prompts}_prompts": raw_64,
            "trainer_vs_raw": round(last["throughput"]["images_per_s"] / raw_same["images_per_s"], 3)}


def torchrun(work: Path, data: Path, nproc: int, size: int) -> dict:
    out = work / "torchrun"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           str(Path(__file__)), "--worker", str(data), str(out), str(size)]
    t = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        return {"nproc": nproc, "error": proc.stderr[-2000:]}
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(nproc)]
    return {"nproc": nproc, "backend": ranks[0]["backend"], "seconds": round(time.time() - t, 1),
            "identical_weights": len({r["weights_sha256"] for r in ranks}) == 1,
            "images_per_s_all_ranks": ranks[0]["throughput"].get("images_per_s_all_ranks")}


def worker(data: str, out: str, size: str) -> None:
    """One torchrun rank: a short ``gt`` run on the device ``auto`` picks (GPU LOCAL_RANK or CPU)."""
    from tinysam.distill import TrainConfig, train

    cfg = TrainConfig(data=data, out=out, stage="gt", student="tinysam", image_size=int(size), steps=5, batch_size=2,
                      prompts_per_image=8, device="auto", progress=False, checkpoint_every=10**6)
    last = train(cfg)
    Path(out, f"rank{last['rank']}.json").write_text(json.dumps(last))


def main() -> None:
    args = _args()
    if args.worker:
        worker(*args.worker)
        return
    import torch

    from calibration_data.minisa import generate_minisa

    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --dry-run for the CPU rehearsal")
    dry = args.dry_run
    device, precision = ("cpu", "bf16") if dry else ("cuda", "bf16")
    big, small = (64, 64) if dry else (1024, 256)
    batches = [int(b) for b in (args.batches or ("1,2" if dry else "1,8,32")).split(",")]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    report = Report(Path(args.out).with_name(Path(args.out).stem + "_dryrun.json") if dry else Path(args.out))
    report.add("env", {**_env(device), "dry_run": dry})
    t = time.time()
    data = generate_minisa(work / "minisa", 8 if dry else 64, image_size=small if dry else 512, seed=0,
                           split="train", overwrite=True)
    report.add("data", {"images": 8 if dry else 64, "generated_at_px": small if dry else 512,
                        "seconds": round(time.time() - t, 1)})
    report.add("smoke", smoke(work, data, device, precision, small, 2 if dry else 8, 10 if dry else 30))
    report.add("throughput", [throughput(work, data, device, precision, big, b, 3 if dry else 6, 8 if dry else 64,
                                         0 if dry else 8) for b in batches])
    nproc = 2 if dry else max(torch.cuda.device_count(), 1)
    report.add("torchrun", torchrun(work, data, nproc, small))
    report.add("finished_utc", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


if __name__ == "__main__":
    main()
