"""The bench command: speed, size, conversion cost and accuracy of every variant."""

from __future__ import annotations

import click

from cli_commands.errors import UserError


def _csv(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(v.strip() for v in value.split(",") if v.strip())


@click.command("bench")
@click.option("--quick", is_flag=True, help="Small, fast development run (default image size 256, fp32+mixed).")
@click.option("--image-size", type=int, default=None, help="Model input size (default 1024; 256 with --quick).")
@click.option("--suites", default=None, help="Comma list of conversion,sizes,peak,latency,accuracy,everything (default), ptq,decoder_split,everything_suite (by name).")
@click.option("--model", "model_name", default="tinysam", show_default=True, help="Model name.")
@click.option("--checkpoint", default=None, help="Weights (default: shipped trained weights, else untrained).")
@click.option("--untrained", is_flag=True, help="Ignore shipped weights: use the seeded untrained model.")
@click.option("--targets", default=None, help="Comma list of onnx,tflite,coreml,executorch,coreai (default all).")
@click.option("--precisions", default=None, help="Comma list of fp32,fp16,int8,mixed,w8a8,palette4,palette6,w8a8-opt.")
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True)
@click.option("--repeats", type=click.IntRange(1), default=None, help="Timed runs per row (median reported).")
@click.option("--warmup", type=click.IntRange(0), default=None, help="Untimed runs first.")
@click.option("--accuracy-images", type=click.IntRange(1), default=None, help="Images in the accuracy set.")
@click.option("--accuracy-size", type=int, default=None, help="Input size of the accuracy and everything suites "
              "(default: the shipped weights' training size, else --image-size).")
@click.option("--no-verify", is_flag=True, help="Skip the parity check inside each conversion.")
@click.option("--packages", default=None, help="Keep packages here (default: temporary); reused without "
              "the conversion suite.")
@click.option("--out", default=None, help="Results directory (default bench/results).")
@click.option("--no-benchmarks-md", is_flag=True, help="Do not regenerate BENCHMARKS.md.")
def bench_cmd(quick, image_size, suites, model_name, checkpoint, untrained, targets, precisions, threads, repeats, warmup,  # noqa: ANN001
              accuracy_images, accuracy_size, no_verify, packages, out, no_benchmarks_md) -> None:
    """Measure speed, size, conversion cost and accuracy of every variant; write results and BENCHMARKS.md."""
    from converters.logs import quiet_logs

    quiet_logs()
    from bench.run import BenchConfig, run_bench

    kw = dict(model=model_name, image_size=image_size, checkpoint=checkpoint, threads=threads, repeats=repeats,
              warmup=warmup, accuracy_images=accuracy_images, accuracy_size=accuracy_size, suites=_csv(suites), targets=_csv(targets),
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
