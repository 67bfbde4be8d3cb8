"""Data and training commands: minisa (synthetic data), distill (train a student), quantize (PTQ)."""

from __future__ import annotations

import click

from cli_commands.errors import UserError


@click.command("minisa")
@click.option("--out", "out_dir", required=True, help="Data set root; images go to OUT/<split>/.")
@click.option("--images", type=click.IntRange(1, 1_000_000), default=100, show_default=True,
              help="Number of images (1..1,000,000; a progress bar shows the count).")
@click.option("--size", type=click.IntRange(16, 4096), default=256, show_default=True, help="Image side (pixels).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (same seed, same data).")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="train", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing split.")
@click.option("--noise", type=click.FloatRange(0, 50), default=2.0, show_default=True, help="Gaussian noise std (0-255 scale).")
@click.option("--blur", type=click.FloatRange(0, 5), default=0.0, show_default=True, help="Gaussian blur sigma (pixels).")
def minisa_cmd(out_dir: str, images: int, size: int, seed: int, split: str, overwrite: bool, noise: float,
               blur: float) -> None:
    """Generate a mini-SA data set: synthetic SA-1B-format scenes with exact masks."""
    from calibration_data.minisa import generate_minisa

    try:
        path = generate_minisa(out_dir, images, image_size=size, seed=seed, split=split, overwrite=overwrite,
                               noise_std=noise, blur_sigma=blur)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    click.echo(f"wrote {images} images to {path}")


@click.command("distill")
@click.option("--teacher", default="sam_vit_h", show_default=True, help="Teacher model name.")
@click.option("--teacher-checkpoint", default=None, help="Teacher weights (needed for --stage kd/sami).")
@click.option("--student", default="tinysam", show_default=True, help="Student model name.")
@click.option("--student-checkpoint", default=None, help="Initial student weights (e.g. after --stage sami).")
@click.option("--data", required=True, help="SA-1B-format directory (image + JSON with RLE masks).")
@click.option("--out", required=True,
              help="Run directory (config.json, metrics.jsonl, resume.json + state, throughput.json, student.safetensors).")
@click.option("--steps", type=int, default=1000, show_default=True)
@click.option("--image-size", type=int, default=None, help="Input size for teacher and student (default native).")
@click.option("--stage", type=click.Choice(["kd", "gt", "sami", "warmup"]), default="kd", show_default=True,
              help="kd: TinySAM distillation; gt: ground-truth losses only; sami: masked image pretraining; "
                   "warmup: a fresh decoder learns to follow prompts on random shapes (encoder frozen).")
@click.option("--prompts-per-image", type=int, default=64, show_default=True)
@click.option("--batch-size", type=int, default=1, show_default=True, help="Images per forward pass (per process).")
@click.option("--grad-accum", type=int, default=1, show_default=True,
              help="Forward passes per optimizer step (effective batch = batch size x grad accum x processes).")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True,
              help="Autocast dtype of the forward passes (losses and optimizer stay fp32; fp16 uses a grad scaler).")
@click.option("--num-workers", type=int, default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--prefetch-factor", type=int, default=2, show_default=True, help="Batches prefetched per worker.")
@click.option("--teacher-online", is_flag=True, help="Compute teacher embeddings in the loop (no disk cache).")
@click.option("--cache-batch-size", type=int, default=8, show_default=True,
              help="Images per teacher forward pass when filling the embedding cache.")
@click.option("--compile", is_flag=True, help="torch.compile the image encoders and mask decoders.")
@click.option("--fixed-shapes", is_flag=True, help="Pad every image to --prompts-per-image prompts (static shapes).")
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--decoder-lr", type=float, default=None, help="Prompt encoder + mask decoder learning rate (default --lr).")
@click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]), default="constant", show_default=True,
              help="cosine: every learning rate decays to 5% of its start over --steps.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--data-fraction", type=float, default=1.0, show_default=True)
@click.option("--checkpoint-every", type=int, default=100, show_default=True)
@click.option("--no-hard-prompts", is_flag=True, help="Disable hard prompt sampling (one click or a box).")
@click.option("--no-hard-mask-weighting", is_flag=True, help="Disable hard mask weighting of the output loss.")
@click.option("--focal-weight", type=float, default=20.0, show_default=True,
              help="Focal:dice weight of the ground-truth mask loss (SAM: 20; 1 learns faster from scratch).")
@click.option("--freeze-batchnorm", is_flag=True, help="BatchNorm uses and keeps its running statistics.")
@click.option("--bn-calibration-images", type=int, default=0, show_default=True,
              help="With --freeze-batchnorm: first set those statistics from this many training images.")
@click.option("--min-mask-pixels", type=int, default=4, show_default=True,
              help="Skip masks smaller than this many pixels of the low-res (S/4) mask frame.")
@click.option("--fixed-encoder", is_flag=True, help="Train the prompt encoder and mask decoder only.")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where it stopped.")
def distill_cmd(**kw) -> None:
    """Train a student: TinySAM distillation, SAMI pretraining or GT training (torchrun for several processes:
    nccl with one GPU per rank, gloo on CPUs)."""
    from tinysam.distill import TrainConfig, train

    resume = kw.pop("resume")
    cfg = TrainConfig(
        hard_prompts=not kw.pop("no_hard_prompts"), hard_mask_weighting=not kw.pop("no_hard_mask_weighting"),
        train_encoder=not kw.pop("fixed_encoder"), **kw
    )
    try:
        last = train(cfg.validate(), resume=resume)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    click.echo(f"done: {last}")


@click.command("quantize")
@click.option("--model", "model_name", default="tinysam", show_default=True, help="Model name.")
@click.option("--checkpoint", default=None, help="Float weights (random seeded weights if omitted).")
@click.option("--image-size", type=int, default=None, help="Input size (default: the model's native size).")
@click.option("--bits", default="w8a8", show_default=True, help="Weight/activation bits, e.g. w8a8, w6a6, w4a4.")
@click.option("--calibration", default=None, help="Directory of calibration images (default: bundled photos).")
@click.option("--images", type=click.IntRange(1, 64), default=8, show_default=True, help="Calibration images (1..64).")
@click.option("--held-out", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Extra images for the IoU report (1..64).")
@click.option("--candidates", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="Scale candidates per operand (1..1000).")
@click.option("--rounds", type=click.IntRange(1, 10), default=3, show_default=True, help="Alternating search rounds (1..10).")
@click.option("--method", type=click.Choice(["hessian", "max"]), default="hessian", show_default=True)
@click.option("--mixed", is_flag=True, help="Also measure sensitivities and write a mixed precision plan.")
@click.option("--max-iou-drop", type=float, default=None, help="Mixed plan budget (default 0.01).")
@click.option("--max-size-mb", type=float, default=None, help="Mixed plan budget by weight size instead.")
@click.option("--out", required=True, help="Output directory (quantized model, report.json, plan).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory (built first, then swapped in).")
def quantize_cmd(model_name: str, checkpoint: str | None, image_size: int | None, bits: str,
                 calibration: str | None, images: int, held_out: int, candidates: int, rounds: int,
                 method: str, mixed: bool, max_iou_drop: float | None, max_size_mb: float | None, out: str,
                 overwrite: bool) -> None:
    """Post-training quantization (Q-TinySAM recipe): scale search, quantized model and report."""
    from tinysam.quant.pipeline import quantize
    from tinysam.quant.search import SearchConfig

    if max_iou_drop is None and max_size_mb is None:
        max_iou_drop = 0.01
    try:
        cfg = SearchConfig(n_candidates=candidates, rounds=rounds, method=method).validate()
        res = quantize(model_name, out, checkpoint, image_size, bits, calibration, images, held_out, cfg,
                       mixed, max_iou_drop, max_size_mb, overwrite=overwrite)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    rep = res["report"]
    click.echo(f"{model_name} {bits}: mask IoU vs float {rep['mask_iou']:.4f} on {rep['held_out_images']} "
               f"held-out images; {rep['quantized_layers']} layers quantized -> {out}")


@click.command("calibrate-iou-head")
@click.option("--model", "model_name", default="tinysam", show_default=True, help="Model name.")
@click.option("--checkpoint", required=True, help="Trained weights (.safetensors or a plain state_dict).")
@click.option("--image-size", type=int, default=None, help="Input size the weights were trained at.")
@click.option("--data", required=True, help="SA-1B-format directory with ground-truth masks (e.g. `minisa` output).")
@click.option("--scenes", type=click.IntRange(1, 100_000), default=40, show_default=True,
              help="Scenes to read from --data.")
@click.option("--points-per-side", type=click.IntRange(2, 64), default=16, show_default=True,
              help="Grid of clicks per scene (as everything mode).")
@click.option("--epochs", type=click.IntRange(1, 100_000), default=300, show_default=True)
@click.option("--out", required=True, help="Output weights (.safetensors); a report OUT.json is written beside it.")
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
def calibrate_iou_head_cmd(model_name: str, checkpoint: str, image_size: int | None, data: str, scenes: int,
                           points_per_side: int, epochs: int, out: str, overwrite: bool) -> None:
    """Refit only the IoU head to ground-truth mask quality (every mask stays as it was)."""
    import json
    from pathlib import Path

    from tqdm import tqdm

    from tinysam.distill.iou_head import IouHeadConfig, calibrate_iou_head, read_scenes, save_calibrated

    out_path = Path(out)
    if out_path.suffix != ".safetensors":
        raise UserError(f"--out must end in .safetensors, got {out}")
    report_path = out_path.with_suffix(".json")
    for path in (out_path, report_path):
        if path.exists() and not overwrite:
            raise UserError(f"{path} exists (pass --overwrite to replace it)")
    if out_path.resolve() == Path(checkpoint).resolve():
        raise UserError("--out is the input checkpoint; choose another path")
    from tinysam import build_sam

    try:
        model = build_sam(model_name, checkpoint, image_size=image_size)
        loaded = read_scenes(data, scenes)
        bar = tqdm(total=len(loaded), desc="IoU head: clicks", unit="scene")
        report = calibrate_iou_head(model, loaded, IouHeadConfig(points_per_side=points_per_side, epochs=epochs),
                                    progress=lambda n, _total: bar.update(n - bar.n))
        bar.close()
    except (ValueError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    save_calibrated(model, out_path)
    desc = {"iou_head_calibration": {**report.to_json(), "checkpoint": str(checkpoint), "data": str(data)}}
    tmp = report_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(desc, indent=2) + "\n")
    tmp.replace(report_path)
    b, a = report.before, report.after
    click.echo(f"IoU head on {report.holdout_pairs} held-out clicks: mean abs error {b.mae:.3f} -> {a.mae:.3f}, "
               f"rank correlation {b.spearman:.3f} -> {a.spearman:.3f}; mean target IoU {a.mean_target:.3f} "
               f"-> {out_path}")
