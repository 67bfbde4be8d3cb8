"""Package commands: convert, verify, info (model or package) and the end-to-end demo."""

from __future__ import annotations

from pathlib import Path

import click

from cli_commands.errors import UserError


def _human_size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


@click.command("convert")
@click.option("--model", "model_name", default="tinysam", show_default=True, help="Model name.")
@click.option("--checkpoint", default=None, help="Weights (default: shipped trained student, else a seeded UNTRAINED model).")
@click.option("--image-size", type=int, default=None, help="Model input size (default: native).")
@click.option("--target", default="all", show_default=True,
              help="coreai,coreml,tflite,onnx,executorch or all (all: every target that exports the precision).")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8", "mixed", "w8a8", "palette4", "palette6", "w8a8-opt"]), default="fp32",
              show_default=True, help="int8: int8 weights, activations quantized at run time "
              "(ONNX Runtime, LiteRT); mixed: a measured per-group plan (float, int8 weights, dynamic or static int8 "
              "activations where the target runs them) within one budget; "
              "w8a8: the Q-TinySAM recipe (int8 weights and static int8 activations with its searched scales); "
              "Core AI only: palette4/palette6 (k-means palettized weights), w8a8-opt (coreai-opt's calibrated W8A8).")
@click.option("--calibration", default=None, help="Image directory for the parity check, the measured mixed plan "
              "and the w8a8 scale search (default: bundled photos).")
@click.option("--mixed-plan", type=click.Choice(["auto", "measured", "fixed"]), default="auto", show_default=True,
              help="--precision mixed: plan measured per group (accuracy at the weights' trained size on held-out "
              "mini-SA, speed from the target's 1024 px cost table), or the fixed built-in plan; auto measures when "
              "the plan's accuracy size is at most 512 px (or a budget is given), else fixed.")
@click.option("--max-iou-drop", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Measured mixed plan budget: mean mask-IoU drop vs fp32 (default 0.01).")
@click.option("--max-latency-ratio", type=click.FloatRange(0, 10, min_open=True), default=None,
              help="Measured mixed plan budget instead: encoder latency / fp32 (the most accurate plan within it).")
@click.option("--max-size", "max_size_mb", type=click.FloatRange(0, min_open=True), default=None,
              help="Measured mixed plan budget instead: weight size in MB (the most accurate plan within it).")
@click.option("--no-verify", is_flag=True, help="Skip the parity check against the PyTorch reference.")
@click.option("--zip", "zip_", is_flag=True, help="Also write <package>.zip next to each package.")
@click.option("--out", required=True, help="Output directory for the packages.")
@click.option("--overwrite", is_flag=True, help="Replace existing packages (built first, then swapped in).")
@click.option("--allow-nonfinite-weights", "allow_nonfinite", is_flag=True,
              help="Load a checkpoint that holds NaN/Inf values (refused by default; parity still fails it).")
def convert_cmd(model_name, checkpoint, image_size, target, precision, calibration, mixed_plan, max_iou_drop,  # noqa: ANN001
                max_latency_ratio, max_size_mb, no_verify, zip_, out, overwrite, allow_nonfinite) -> None:
    """Export to mobile deployment packages, each proven against the reference before it appears."""
    from converters.logs import quiet_logs

    quiet_logs()
    from converters import ConvertOptions, convert

    def progress(msg: str) -> None:
        click.echo(f"  {msg}", err=True)

    try:
        options = ConvertOptions(targets=target, precision=precision, out_dir=out, checkpoint=checkpoint,
                                 image_size=image_size, calibration=calibration, verify=not no_verify, zip=zip_,
                                 mixed_plan=mixed_plan, max_iou_drop=max_iou_drop, max_size_mb=max_size_mb,
                                 max_latency_ratio=max_latency_ratio,
                                 allow_nonfinite=allow_nonfinite, overwrite=overwrite)
        results = convert(model_name, options, progress)
    except ValueError as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    for r in results:
        m = r.parity.get("metrics", {})
        gate = f", mask IoU {m['mask_iou_mean']:.4f}" if "mask_iou_mean" in m else " (parity not checked)"
        if "fake_quant" in r.parity:
            gate += f" (vs fake-quant {r.parity['fake_quant']['metrics']['mask_iou_mean']:.4f})"
        click.echo(f"{r.path}  {_human_size(r.size_bytes)}  {r.seconds:.1f} s{gate}")
        if r.zip_path:
            click.echo(f"{r.zip_path}")
        if r.precision == "mixed":
            import json

            from converters.mixed_plan import plan_summary

            plan = json.loads((r.path / "manifest.json").read_text()).get("precision_plan", {})
            for line in plan_summary(plan, r.target):
                click.echo(line)
    if results:
        click.echo(f"next: python cli.py verify {results[0].path}")


@click.command("verify")
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


@click.command("info")
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


@click.command("demo")
@click.option("--out", default="demo_out", show_default=True, help="Output directory.")
@click.option("--model", "model_name", default="tinysam", show_default=True, help="Model name.")
@click.option("--checkpoint", default=None, help="Weights (default: shipped trained student, else untrained).")
@click.option("--image-size", type=int, default=None, help="Model input size (default: the weights' own).")
@click.option("--image", "image_path", default=None, help="Photo to segment (default: a bundled photo).")
@click.option("--target", default="all", show_default=True, help="coreml,tflite,onnx,executorch or all.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8", "mixed", "w8a8"]), default="fp32",
              show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory (built first, then swapped in).")
def demo_cmd(out, model_name, checkpoint, image_size, image_path, target, precision, overwrite) -> None:  # noqa: ANN001
    """The main job end to end: convert, verify, then segment a photo with every package."""
    from converters.logs import quiet_logs

    quiet_logs()
    from converters.demo import run_demo

    try:
        summary = run_demo(out, model_name, checkpoint, image_size, image_path, target, precision,
                           progress=lambda msg: click.echo(f"  {msg}", err=True), overwrite=overwrite)
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
