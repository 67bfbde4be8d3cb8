"""tinysam-mobile command line: one thin click group over the packages.

Each command parses its options, calls one function, and prints. Heavy packages (torch,
converters) are imported inside the commands so `--help` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click


class UserError(click.ClickException):
    """A failure the user can fix: printed as one line, exit code 1."""


class _Group(click.Group):
    """Click group that turns unexpected exceptions into one-line errors unless --debug."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - the CLI boundary
            if ctx.obj and ctx.obj.get("debug"):
                raise
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            click.echo(f"Error: {msg}", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """tinysam-mobile: take an efficient Segment Anything model from PyTorch to phones."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


# --- commands are registered below, one small function each --------------------------------


@main.command("minisa")
@click.option("--out", "out_dir", required=True, help="Data set root; images go to OUT/<split>/.")
@click.option("--images", type=click.IntRange(1), default=100, show_default=True, help="Number of images.")
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


@main.command("quantize")
@click.option("--model", "model_name", default="tinysam", show_default=True, help="Model name.")
@click.option("--checkpoint", default=None, help="Float weights (random seeded weights if omitted).")
@click.option("--image-size", type=int, default=None, help="Input size (default: the model's native size).")
@click.option("--bits", default="w8a8", show_default=True, help="Weight/activation bits, e.g. w8a8, w6a6, w4a4.")
@click.option("--calibration", default=None, help="Directory of calibration images (default: bundled photos).")
@click.option("--images", type=int, default=8, show_default=True, help="Calibration images.")
@click.option("--held-out", type=int, default=2, show_default=True, help="Extra images for the IoU report.")
@click.option("--candidates", type=int, default=100, show_default=True, help="Scale candidates per operand.")
@click.option("--rounds", type=int, default=3, show_default=True, help="Alternating search rounds.")
@click.option("--method", type=click.Choice(["hessian", "max"]), default="hessian", show_default=True)
@click.option("--mixed", is_flag=True, help="Also measure sensitivities and write a mixed precision plan.")
@click.option("--max-iou-drop", type=float, default=None, help="Mixed plan budget (default 0.01).")
@click.option("--max-size-mb", type=float, default=None, help="Mixed plan budget by weight size instead.")
@click.option("--out", required=True, help="Output directory (quantized model, report.json, plan).")
def quantize_cmd(model_name: str, checkpoint: str | None, image_size: int | None, bits: str,
                 calibration: str | None, images: int, held_out: int, candidates: int, rounds: int,
                 method: str, mixed: bool, max_iou_drop: float | None, max_size_mb: float | None, out: str) -> None:
    """Post-training quantization (Q-TinySAM recipe): scale search, quantized model and report."""
    from tinysam.quant.pipeline import quantize
    from tinysam.quant.search import SearchConfig

    if max_iou_drop is None and max_size_mb is None:
        max_iou_drop = 0.01
    try:
        cfg = SearchConfig(n_candidates=candidates, rounds=rounds, method=method).validate()
        res = quantize(model_name, out, checkpoint, image_size, bits, calibration, images, held_out, cfg,
                       mixed, max_iou_drop, max_size_mb)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    rep = res["report"]
    click.echo(f"{model_name} {bits}: mask IoU vs float {rep['mask_iou']:.4f} on {rep['held_out_images']} "
               f"held-out images; {rep['quantized_layers']} layers quantized -> {out}")


def _csv(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(v.strip() for v in value.split(",") if v.strip())


@main.command("bench")
@click.option("--quick", is_flag=True, help="Small, fast development run (default image size 256, fp32+mixed).")
@click.option("--image-size", type=int, default=None, help="Model input size (default 1024; 256 with --quick).")
@click.option("--suites", default=None, help="Comma list of conversion,sizes,peak,latency,accuracy,everything.")
@click.option("--model", "model_name", default="tinysam", show_default=True, help="Model name.")
@click.option("--checkpoint", default=None, help="Weights (default: shipped trained weights, else untrained).")
@click.option("--untrained", is_flag=True, help="Ignore shipped weights: use the seeded untrained model.")
@click.option("--targets", default=None, help="Comma list of onnx,tflite,coreml (default all).")
@click.option("--precisions", default=None, help="Comma list of fp32,fp16,int8,mixed.")
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True)
@click.option("--repeats", type=click.IntRange(1), default=None, help="Timed runs per row (median reported).")
@click.option("--warmup", type=click.IntRange(0), default=None, help="Untimed runs first.")
@click.option("--accuracy-images", type=click.IntRange(1), default=None, help="Images in the accuracy set.")
@click.option("--no-verify", is_flag=True, help="Skip the parity check inside each conversion.")
@click.option("--packages", default=None, help="Keep packages here (default: temporary); reused without "
              "the conversion suite.")
@click.option("--out", default=None, help="Results directory (default bench/results).")
@click.option("--no-benchmarks-md", is_flag=True, help="Do not regenerate BENCHMARKS.md.")
def bench_cmd(quick, image_size, suites, model_name, checkpoint, untrained, targets, precisions, threads, repeats, warmup,  # noqa: ANN001
              accuracy_images, no_verify, packages, out, no_benchmarks_md) -> None:
    """Measure speed, size, conversion cost and accuracy of every variant; write results and BENCHMARKS.md."""
    from converters.logs import quiet_logs

    quiet_logs()
    from bench.run import BenchConfig, run_bench

    kw = dict(model=model_name, image_size=image_size, checkpoint=checkpoint, threads=threads, repeats=repeats,
              warmup=warmup, accuracy_images=accuracy_images, suites=_csv(suites), targets=_csv(targets),
              precisions=_csv(precisions), packages_dir=packages, out_dir=out)
    kw = {k: v for k, v in kw.items() if v is not None}
    if no_verify:
        kw["verify"] = False
    if no_benchmarks_md:
        kw["benchmarks_md"] = None
    if untrained:
        kw["shipped_weights"] = False
    try:
        cfg = (BenchConfig.quick_config(**kw) if quick else BenchConfig(**kw)).validate()
        res = run_bench(cfg, progress=lambda m: click.echo(f"  {m}", err=True))
    except ValueError as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    for t in res["targets"]:
        click.echo(f"{t['status']:4}  {t['target']}: {t['value']} (target {t['threshold']}){'; ' + t['note'] if t['note'] else ''}")
    click.echo(f"results: {cfg.out_dir}/summary.md" + (f", {cfg.benchmarks_md}" if cfg.benchmarks_md else ""))


def _human_size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"




@main.command("demo")
@click.option("--out", default="demo_out", show_default=True, help="Output directory.")
@click.option("--model", "model_name", default="tinysam", show_default=True, help="Model name.")
@click.option("--checkpoint", default=None, help="Weights (default: shipped trained student, else untrained).")
@click.option("--image-size", type=int, default=None, help="Model input size (default: the weights' own).")
@click.option("--image", "image_path", default=None, help="Photo to segment (default: a bundled photo).")
@click.option("--target", default="all", show_default=True, help="coreml,tflite,onnx or all.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8", "mixed"]), default="fp32",
              show_default=True)
def demo_cmd(out, model_name, checkpoint, image_size, image_path, target, precision) -> None:  # noqa: ANN001
    """The main job end to end: convert, verify, then segment a photo with every package."""
    from converters.logs import quiet_logs

    quiet_logs()
    from converters.demo import run_demo

    try:
        summary = run_demo(out, model_name, checkpoint, image_size, image_path, target, precision,
                           progress=lambda msg: click.echo(f"  {msg}", err=True))
    except ValueError as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    click.echo(f"model: {summary['model']} ({'trained' if summary['trained'] else 'UNTRAINED, seeded'})")
    click.echo(f"{'package':<40} {'size':>9} {'parity IoU':>10} {'point IoU':>9} {'encode s':>8} "
               f"{'masks':>5} {'everything s':>12}")
    for p in summary["packages"]:
        iou = p["parity"].get("mask_iou_mean")
        n_masks, secs = p["everything_masks"], p["everything_seconds"]
        click.echo(f"{Path(p['package']).name:<40} {_human_size(p['size_bytes']):>9} "
                   f"{(f'{iou:.4f}' if iou is not None else '-'):>10} {p['point_mask_iou_vs_reference']:>9.4f} "
                   f"{p['encoder_seconds']:>8.3f} {('-' if n_masks is None else str(n_masks)):>5} "
                   f"{('-' if secs is None else f'{secs:.2f}'):>12}")
    click.echo(f"overlays and summary.json in {out}/ (point IoU: package mask vs the PyTorch reference)")


@main.command("convert")
@click.option("--model", "model_name", default="tinysam", show_default=True, help="Model name.")
@click.option("--checkpoint", default=None, help="Weights (default: shipped trained student, else a seeded UNTRAINED model).")
@click.option("--image-size", type=int, default=None, help="Model input size (default: native).")
@click.option("--target", default="all", show_default=True, help="coreml,tflite,onnx or all.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8", "mixed"]), default="fp32",
              show_default=True)
@click.option("--calibration", default=None, help="Image directory for the parity check and the measured mixed plan "
              "(default: bundled photos).")
@click.option("--mixed-plan", type=click.Choice(["auto", "measured", "fixed"]), default="auto", show_default=True,
              help="--precision mixed: plan from measured per-group sensitivity, or the fixed built-in plan; "
              "auto measures up to 512 px input (or with a budget), else fixed.")
@click.option("--max-iou-drop", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Measured mixed plan budget: mean mask-IoU drop vs fp32 (default 0.01).")
@click.option("--max-size", "max_size_mb", type=click.FloatRange(0, min_open=True), default=None,
              help="Measured mixed plan budget by weight size in MB instead.")
@click.option("--no-verify", is_flag=True, help="Skip the parity check against the PyTorch reference.")
@click.option("--zip", "zip_", is_flag=True, help="Also write <package>.zip next to each package.")
@click.option("--out", required=True, help="Output directory for the packages.")
def convert_cmd(model_name, checkpoint, image_size, target, precision, calibration, mixed_plan, max_iou_drop,  # noqa: ANN001
                max_size_mb, no_verify, zip_, out) -> None:
    """Export to mobile deployment packages, each proven against the reference before it appears."""
    from converters.logs import quiet_logs

    quiet_logs()
    from converters.api import convert

    def progress(msg: str) -> None:
        click.echo(f"  {msg}", err=True)

    try:
        results = convert(model_name, checkpoint, target, precision, out, calibration, not no_verify,
                          image_size, zip_, progress, mixed_plan, max_iou_drop, max_size_mb)
    except ValueError as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    for r in results:
        m = r.parity.get("metrics", {})
        gate = f", mask IoU {m['mask_iou_mean']:.4f}" if "mask_iou_mean" in m else " (parity not checked)"
        click.echo(f"{r.path}  {_human_size(r.size_bytes)}  {r.seconds:.1f} s{gate}")
        if r.zip_path:
            click.echo(f"{r.zip_path}")
    if results:
        click.echo(f"next: python cli.py verify {results[0].path}")


@main.command("verify")
@click.argument("package")
@click.option("--checkpoint", default=None, help="Checkpoint the package was built from (trained packages).")
@click.option("--calibration", default=None, help="Image directory for parity (default: 2 bundled photos).")
def verify_cmd(package, checkpoint, calibration) -> None:  # noqa: ANN001
    """Re-check a package's (directory or .zip) file hashes and re-run parity against the PyTorch reference."""
    from converters.logs import quiet_logs

    quiet_logs()
    from converters.verify import verify_package

    try:
        res = verify_package(package, checkpoint, calibration=calibration)
    except ValueError as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    for p in res["hash_problems"]:
        click.echo(f"  {p}", err=True)
    if res["parity"]:
        for k, v in res["parity"]["metrics"].items():
            click.echo(f"  {k}: {v:.6g}" if isinstance(v, float) else f"  {k}: {v}")
        for f in res["parity"]["failures"]:
            click.echo(f"  FAIL {f}", err=True)
    if not res["ok"]:
        raise UserError(f"{package}: verification failed")
    click.echo(f"{package}: OK (hashes and parity)")


def _backend_options(f):
    """--model/--checkpoint/--image-size (PyTorch reference) or --package (exported, mobile runtime)."""
    for opt in reversed([
        click.option("--model", "model_name", default="tinysam", show_default=True, help="Model name (PyTorch path)."),
        click.option("--checkpoint", default=None, help="Weights (default: shipped student, else untrained)."),
        click.option("--image-size", type=int, default=None, help="Model input size (default: native)."),
        click.option("--package", default=None, help="Exported package dir/zip, run with the mobile runtime."),
    ]):
        f = opt(f)
    return f


def _open_backend(model_name: str, checkpoint: str | None, image_size: int | None, package: str | None):
    """Open the predictor; says plainly on stderr when the weights are untrained."""
    from evaluation.backends import open_backend

    try:
        backend = open_backend(model_name, checkpoint, image_size, package)
    except ValueError as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    click.echo(f"model: {backend.description}", err=True)
    if not backend.trained:
        fix = ("it was exported without a checkpoint" if package else
               "no --checkpoint given and no trained weights shipped; pass --checkpoint for real results")
        click.echo(f"warning: this model is UNTRAINED (random weights), its masks are not meaningful: {fix}",
                   err=True)
    return backend


def _parse_points(ctx, param, values):  # noqa: ANN001, ANN202 - click callback
    from evaluation.segment import parse_point

    try:
        return [parse_point(v) for v in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _parse_box(ctx, param, value):  # noqa: ANN001, ANN202 - click callback
    from evaluation.segment import parse_box

    try:
        return None if value is None else parse_box(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command("segment")
@click.option("--image", required=True, help="Input image (any format Pillow reads).")
@_backend_options
@click.option("--point", "points", multiple=True, callback=_parse_points, metavar="X,Y[,LABEL]",
              help="Prompt point in pixels; LABEL 1 positive (default) or 0 negative. Repeatable.")
@click.option("--box", callback=_parse_box, metavar="X0,Y0,X1,Y1", help="Prompt box in pixels.")
@click.option("--everything", is_flag=True, help="Segment everything (TinySAM's hierarchical mode).")
@click.option("--dense", is_flag=True, help="With --everything: SAM's dense point grid instead.")
@click.option("--points-per-side", type=click.IntRange(4), default=32, show_default=True,
              help="Everything-mode grid size.")
@click.option("--multimask", is_flag=True, help="Write all 3 masks of a prompt (best first), not only the best.")
@click.option("--out", required=True, help="Output directory (mask_NNN.png, masks.json, overlay.png).")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output directory.")
def segment_cmd(image, model_name, checkpoint, image_size, package, points, box, everything, dense,  # noqa: ANN001
                points_per_side, multimask, out, overwrite) -> None:
    """Segment an image from points, a box, or everything; write masks and an overlay."""
    if everything and (points or box):
        raise click.UsageError("--everything cannot be combined with --point/--box")
    if not everything and not (points or box):
        raise click.UsageError("give --point, --box or --everything")
    if dense and not everything:
        raise click.UsageError("--dense only applies with --everything")
    from evaluation import segment as seg
    from evaluation.images import load_rgb
    from evaluation.writers import check_output_dir

    try:
        check_output_dir(out, overwrite)
        rgb = load_rgb(image)
        seg.check_prompts_in_image(points, box, rgb.shape[:2])
    except ValueError as exc:
        raise UserError(str(exc)) from None
    backend = _open_backend(model_name, checkpoint, image_size, package)
    try:
        if everything:
            generate = backend.make_everything("dense" if dense else "hierarchical", points_per_side)
            result = seg.segment_everything(generate, rgb)
        else:
            result = seg.segment_prompts(backend.predictor, rgb, points, box, multimask)
        meta = {"image": {"file_name": str(image)}, "model": backend.info}
        seg.write_segment(out, rgb, result, meta, overwrite)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if everything and not result.masks:
        click.echo("no mask passed the everything-mode quality filters", err=True)
    best = f", best predicted IoU {result.records[0]['predicted_iou']:.3f}" if not everything and result.records else ""
    click.echo(f"{len(result.masks)} mask(s){best} -> {out}/ (overlay.png, masks.json)")


@main.group("eval")
def eval_group() -> None:
    """Zero-shot evaluation protocols (boxes -> COCO AP, clicks -> mIoU) on either backend."""


def _progress(done: int, total: int) -> None:
    if done == total or done % 10 == 0:
        click.echo(f"  {done}/{total} images", err=True)


@eval_group.command("coco")
@click.option("--images", required=True, help="Directory with the images named in the annotations.")
@click.option("--annotations", required=True, help="COCO instances JSON (ground truth).")
@click.option("--boxes", required=True, help="Detections in COCO results format (bbox XYWH, score).")
@_backend_options
@click.option("--limit", type=click.IntRange(1), default=None, help="Evaluate the first N images only.")
@click.option("--out", required=True, help="Results JSON.")
def eval_coco_cmd(images, annotations, boxes, model_name, checkpoint, image_size, package, limit, out) -> None:  # noqa: ANN001
    """Box prompts from detections -> best of 3 masks -> COCOeval segm AP (TinySAM's protocol)."""
    from evaluation import coco
    from evaluation.writers import write_json_atomic

    try:
        gt = coco.load_coco(annotations)
        dets = coco.load_detections(boxes, gt)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    backend = _open_backend(model_name, checkpoint, image_size, package)
    try:
        results, img_ids = coco.run_box_protocol(backend.predictor, gt, dets, images, limit, _progress)
        stats = coco.evaluate_segm(gt, results, img_ids)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    write_json_atomic(out, {"protocol": "box prompts, best of 3 multimask outputs, COCOeval segm",
                            "model": backend.info, "images": len(img_ids), "detections": len(results),
                            "stats": stats})
    click.echo(coco.format_table(stats))


@eval_group.command("points")
@click.option("--images", required=True, help="Directory with the images named in the annotations.")
@click.option("--annotations", required=True, help="COCO instances JSON (ground truth masks).")
@_backend_options
@click.option("--max-clicks", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option("--limit", type=click.IntRange(1), default=None, help="Evaluate the first N images only.")
@click.option("--out", required=True, help="Results JSON.")
def eval_points_cmd(images, annotations, model_name, checkpoint, image_size, package, max_clicks, limit,  # noqa: ANN001
                    out) -> None:
    """Simulated clicks from GT masks (SAM's protocol) -> mIoU per number of clicks."""
    from evaluation import clicks, coco
    from evaluation.writers import write_json_atomic

    try:
        gt = coco.load_coco(annotations)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    backend = _open_backend(model_name, checkpoint, image_size, package)
    try:
        result = clicks.run_click_protocol(backend.predictor, gt, images, max_clicks, limit, progress=_progress)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    write_json_atomic(out, {"protocol": "simulated clicks (distance transform of error regions), mIoU",
                            "model": backend.info, **result})
    click.echo(clicks.format_clicks_table(result))


@main.command("distill")
@click.option("--teacher", default="sam_vit_h", show_default=True, help="Teacher model name.")
@click.option("--teacher-checkpoint", default=None, help="Teacher weights (needed for --stage kd/sami).")
@click.option("--student", default="tinysam", show_default=True, help="Student model name.")
@click.option("--student-checkpoint", default=None, help="Initial student weights (e.g. after --stage sami).")
@click.option("--data", required=True, help="SA-1B-format directory (image + JSON with RLE masks).")
@click.option("--out", required=True, help="Run directory (config, metrics.jsonl, last.pt, student.pt).")
@click.option("--steps", type=int, default=1000, show_default=True)
@click.option("--image-size", type=int, default=None, help="Input size for teacher and student (default native).")
@click.option("--stage", type=click.Choice(["kd", "gt", "sami"]), default="kd", show_default=True,
              help="kd: TinySAM distillation; gt: ground-truth losses only; sami: masked image pretraining.")
@click.option("--prompts-per-image", type=int, default=64, show_default=True)
@click.option("--images-per-step", type=int, default=1, show_default=True, help="Per process.")
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--decoder-lr", type=float, default=None, help="Prompt encoder + mask decoder learning rate (default --lr).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--data-fraction", type=float, default=1.0, show_default=True)
@click.option("--checkpoint-every", type=int, default=100, show_default=True)
@click.option("--no-hard-prompts", is_flag=True, help="Disable hard prompt sampling (one click or a box).")
@click.option("--no-hard-mask-weighting", is_flag=True, help="Disable hard mask weighting of the output loss.")
@click.option("--focal-weight", type=float, default=20.0, show_default=True,
              help="Focal:dice weight of the ground-truth mask loss (SAM: 20; 1 learns faster from scratch).")
@click.option("--freeze-batchnorm", is_flag=True, help="BatchNorm uses and keeps its running statistics.")
@click.option("--fixed-encoder", is_flag=True, help="Train the prompt encoder and mask decoder only.")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where it stopped.")
def distill_cmd(**kw) -> None:
    """Train a student: TinySAM distillation, SAMI pretraining or GT training (torchrun for several processes)."""
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


@main.command("info")
@click.argument("package", required=False)
@click.option("--model", "model_name", default=None, help="Model name, e.g. tinysam, mobilesam, sam_vit_b.")
@click.option("--image-size", type=int, default=None, help="Input size (default: the model's native 1024).")
@click.option("--json", "as_json", is_flag=True, help="Print the full info as JSON.")
def info_cmd(package: str | None, model_name: str | None, image_size: int | None, as_json: bool) -> None:
    """Parameters per part, image-encoder MACs and the config of a model, or a PACKAGE's (dir or .zip) summary."""
    import json

    if package is not None:
        from converters.verify import describe_package

        try:
            summary = describe_package(package)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        click.echo(json.dumps(summary, indent=2) if as_json else
                   "\n".join(f"{k}: {v}" for k, v in summary.items()))
        return
    if model_name is None:
        raise click.UsageError("give --model NAME or a PACKAGE directory")
    from tinysam.config import MODEL_CONFIGS
    from tinysam.info import describe, format_info

    if model_name not in MODEL_CONFIGS:
        raise UserError(f"unknown model {model_name!r}; choose one of: {', '.join(MODEL_CONFIGS)}")
    try:
        info = describe(model_name, image_size)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    click.echo(json.dumps(info, indent=2) if as_json else format_info(info))


if __name__ == "__main__":
    main()
