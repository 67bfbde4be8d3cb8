"""One benchmark run: conversion, sizes, peak, latency, accuracy and everything-mode suites.

    python cli.py bench [--quick] [--image-size N] [--suites latency,sizes,...]

Writes `<out>/<suite>.json` (each with the run id), `<out>/run.json` (configuration, machine,
targets), `<out>/summary.md`, PNG plots, and regenerates `BENCHMARKS.md`.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import report
from mobile_runtime.package_format import PRECISIONS, TARGETS

ROOT = Path(__file__).resolve().parents[1]
SUITES = ("conversion", "sizes", "peak", "latency", "accuracy", "everything", "ptq", "decoder_split",
          "everything_suite")
DEFAULT_SUITES = SUITES[:-3]  # ptq, decoder_split, everything_suite build their own graphs/packages: run them by name
ALL_TARGETS = TARGETS  # the package format's targets (every registered runtime)
ALL_PRECISIONS = PRECISIONS


@dataclass
class BenchConfig:
    """What one run measures. `quick()` gives the small development configuration."""

    model: str = "tinysam"
    image_size: int = 1024
    checkpoint: str | None = None  # None: the trained weights shipped in tinysam/weights, else untrained
    shipped_weights: bool = True
    threads: int = 2
    warmup: int = 2
    repeats: int = 10
    targets: tuple[str, ...] = ALL_TARGETS
    precisions: tuple[str, ...] = ALL_PRECISIONS
    suites: tuple[str, ...] = DEFAULT_SUITES
    accuracy_images: int = 8
    # accuracy + everything suites: the shipped weights' training size (None: image_size). Masks of a
    # student trained at 128 px mean nothing at 1024, so its accuracy is measured where it was trained.
    accuracy_size: int | None = None
    peak_sizes: tuple[int, ...] = (1024, 2048, 3072)
    verify: bool = True
    quick: bool = False
    out_dir: str = str(ROOT / "bench" / "results")
    benchmarks_md: str | None = str(ROOT / "BENCHMARKS.md")
    packages_dir: str | None = None  # default: a temporary directory removed after the run
    conversion_timeout_s: float = 3600.0
    extra: dict = field(default_factory=dict)

    @classmethod
    def quick_config(cls, **kw) -> BenchConfig:  # noqa: ANN003
        """Small, fast settings for development (not the target configuration)."""
        base = dict(image_size=256, warmup=1, repeats=3, precisions=("fp32", "mixed"), accuracy_images=3,
                    peak_sizes=(1024,), quick=True)
        return cls(**{**base, **kw})

    def validate(self) -> BenchConfig:
        """Raise a one-line ValueError on a bad setting."""
        bad = [s for s in self.suites if s not in SUITES]
        if bad:
            raise ValueError(f"unknown suite(s) {', '.join(bad)}; choose from {', '.join(SUITES)}")
        for name, values, allowed in (("target", self.targets, ALL_TARGETS), ("precision", self.precisions,
                                                                              ALL_PRECISIONS)):
            wrong = [v for v in values if v not in allowed]
            if wrong or not values:
                raise ValueError(f"bad {name}(s) {wrong or values}; choose from {', '.join(allowed)}")
        for size in (self.image_size, self.accuracy_size or self.image_size):
            if size % 16 or size < 64:
                raise ValueError(f"image size must be a multiple of 16 and at least 64, got {size}")
        if self.repeats < 1 or self.warmup < 0 or self.threads < 1 or self.accuracy_images < 1:
            raise ValueError("repeats, threads and accuracy images must be >= 1 and warmup >= 0")
        return self

    def command(self) -> str:
        """The exact command line that reproduces this configuration."""
        d = BenchConfig.quick_config() if self.quick else BenchConfig()
        args = ["python cli.py bench"] + (["--quick"] if self.quick else [])
        opts = (("--model", "model"), ("--image-size", "image_size"), ("--checkpoint", "checkpoint"),
                ("--threads", "threads"), ("--repeats", "repeats"), ("--warmup", "warmup"),
                ("--accuracy-images", "accuracy_images"), ("--accuracy-size", "accuracy_size"))
        args += [f"{flag} {getattr(self, k)}" for flag, k in opts if getattr(self, k) != getattr(d, k)]
        for flag, k in (("--targets", "targets"), ("--precisions", "precisions"), ("--suites", "suites")):
            if tuple(getattr(self, k)) != tuple(getattr(d, k)):
                args.append(f"{flag} {','.join(getattr(self, k))}")
        if not self.verify:
            args.append("--no-verify")
        if not self.shipped_weights:
            args.append("--untrained")
        if Path(self.out_dir).resolve() != Path(d.out_dir).resolve():
            args.append(f"--out {self.out_dir}")
        return " ".join(args)


def resolve_checkpoint(cfg: BenchConfig) -> str | None:
    """The explicit checkpoint, else the shipped trained weights for the model (if any and allowed)."""
    if cfg.checkpoint is not None or not cfg.shipped_weights:
        return cfg.checkpoint
    from tinysam.defaults import find_default_weights

    found = find_default_weights(cfg.model, image_size=cfg.image_size)
    return str(found.path) if found is not None else None


def accuracy_size(cfg: BenchConfig, checkpoint: str | None) -> int:
    """Input size of the accuracy and everything suites: explicit, else the shipped weights' (not with --quick),
    else image_size."""
    if cfg.accuracy_size is not None:
        return cfg.accuracy_size
    if not cfg.quick and checkpoint is not None and cfg.checkpoint is None:  # the shipped weights: their own size
        from tinysam.defaults import find_default_weights

        found = find_default_weights(cfg.model, image_size=cfg.image_size)
        if found is not None and found.image_size:
            return int(found.image_size)
    return cfg.image_size


def find_packages(root: Path) -> list[Path]:
    """Package directories (with a manifest) directly under `root`, sorted."""
    return sorted(p for p in Path(root).iterdir() if (p / "manifest.json").is_file()) if Path(root).is_dir() else []


def run_everything(cfg: BenchConfig, size: int, say) -> dict:  # noqa: ANN001
    """Everything mode via `bench/everything_speed.py` (dense vs hierarchical, reference vs runtime).

    Its main case (a confident TinySAM) runs at min(image_size, 512); its student case at `size`.
    """
    try:
        from bench import everything_speed as ev
    except ImportError as exc:
        return {"skipped": f"bench/everything_speed.py not available ({exc})"}
    if not callable(getattr(ev, "main", None)):
        return {"skipped": "bench/everything_speed.py has no main(argv)"}
    if not (Path(ev.ROOT) / "tests" / "mobile_runtime" / "test_rt_vs_reference.py").is_file():
        return {"skipped": "the everything-mode case uses the test oracle of a source checkout (tests/ is not installed)"}
    argv = ["--image-size", str(min(cfg.image_size, 512)), "--student-size", str(size),
            "--repeats", str(min(cfg.repeats, 3)),
            "--out", str(Path(cfg.out_dir) / "everything_speed.json")]
    say("everything: bench/everything_speed.py " + " ".join(argv))
    result = ev.main(argv)
    return {"command": "python bench/everything_speed.py " + " ".join(argv),
            **(result if isinstance(result, dict) else {"result": result})}


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    from evaluation.writers import finite_or_none  # an undefined number is written as null, never NaN

    tmp.write_text(json.dumps(finite_or_none(obj), indent=1, default=str, allow_nan=False))
    tmp.replace(path)


def run_bench(cfg: BenchConfig, progress=None) -> dict:  # noqa: ANN001
    """Run the selected suites and write every output; returns all results."""
    cfg.validate()
    say = progress or (lambda m: None)
    import torch

    torch.set_num_threads(cfg.threads)
    start, t0 = dt.datetime.now(dt.UTC), time.perf_counter()
    run_id = start.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res: dict = {"machine": report.machine_info()}
    clock: dict[str, float] = {}
    lap = [time.perf_counter()]

    def tick(name: str) -> None:
        now = time.perf_counter()
        clock[name] = round(now - lap[0], 2)
        lap[0] = now

    ckpt = resolve_checkpoint(cfg)
    tmp = None
    if cfg.packages_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-packages-")
    pkg_dir = Path(tmp.name if tmp else cfg.packages_dir)
    try:
        if "conversion" in cfg.suites:
            from bench.conversion import run_conversions

            res["conversion"] = run_conversions(cfg.model, list(cfg.targets), list(cfg.precisions), pkg_dir,
                                                cfg.image_size, ckpt, cfg.verify, out / "logs",
                                                cfg.conversion_timeout_s, say, untrained=ckpt is None)
            tick("conversion")
        wanted = {(t, p) for t in cfg.targets for p in cfg.precisions}
        packages = [p for p in find_packages(pkg_dir)
                    if tuple(json.loads((p / "manifest.json").read_text())[k] for k in ("target", "precision")) in wanted]
        if "sizes" in cfg.suites:
            from bench.sizes import run_sizes

            res["sizes"] = run_sizes(packages)
            tick("sizes")
        from converters.api import load_model

        sam, info = load_model(cfg.model, ckpt, cfg.image_size)
        macs = None
        if "peak" in cfg.suites or "latency" in cfg.suites:
            from tinysam.info import model_info

            minfo = model_info(sam)
            macs = int(minfo["encoder_macs"])
            res["model_info"] = {k: minfo[k] for k in ("name", "image_size", "parameters", "encoder_macs")}
        tick("model")
        if "peak" in cfg.suites:
            from bench.peak import measure_matmul_peak

            say("peak: fp32 matmul")
            res["peak"] = measure_matmul_peak(cfg.peak_sizes, cfg.threads)
            tick("peak")
        if "latency" in cfg.suites:
            from bench.latency import run_latency

            peak = res["peak"]["gflops_best"] if res.get("peak") else None
            res["latency"] = run_latency(sam, packages, cfg.image_size, cfg.warmup, cfg.repeats, cfg.threads,
                                         macs, peak, say)
            tick("latency")
        acc_size = accuracy_size(cfg, ckpt)
        if "accuracy" in cfg.suites:
            from bench.accuracy import run_accuracy

            acc_sam, acc_packages = sam, packages
            if acc_size != cfg.image_size:  # the same variants, converted again at the accuracy size
                from bench.conversion import run_conversions

                say(f"accuracy: converting every variant again at {acc_size} px")
                acc_dir = pkg_dir / f"accuracy-{acc_size}"
                conv = run_conversions(cfg.model, list(cfg.targets), list(cfg.precisions), acc_dir, acc_size, ckpt,
                                       cfg.verify, out / "logs" / f"accuracy-{acc_size}", cfg.conversion_timeout_s,
                                       say, untrained=ckpt is None)
                failed = [f"{r['target']}/{r['precision']}" for r in conv["rows"] if "error" in r]
                if failed:
                    say(f"accuracy: conversion failed at {acc_size} px for {', '.join(failed)} (see logs)")
                acc_sam, _ = load_model(cfg.model, ckpt, acc_size)
                acc_packages = find_packages(acc_dir)
            res["accuracy"] = run_accuracy(acc_sam, acc_packages, cfg.accuracy_images, acc_size, cfg.threads,
                                           progress=say)
            tick("accuracy")
        if "everything" in cfg.suites:
            res["everything"] = run_everything(cfg, acc_size, say)
            tick("everything")
        if "ptq" in cfg.suites:
            from bench.ptq import run_ptq

            res["ptq"] = run_ptq(cfg.model, cfg.image_size, cfg.targets, threads=cfg.threads,
                                 checkpoint=ckpt, untrained=not cfg.shipped_weights,
                                 out=out / "ptq.json", progress=say)
            tick("ptq")
        if "decoder_split" in cfg.suites:
            from bench.decoder_split import run as run_decoder_split

            res["decoder_split"] = run_decoder_split(cfg.image_size, cfg.threads, cfg.repeats, progress=say)
            tick("decoder_split")
        if "everything_suite" in cfg.suites:
            from bench.everything_suite import run as run_everything_suite

            res["everything_suite"] = run_everything_suite(threads=cfg.threads, progress=say)
            tick("everything_suite")
    finally:
        if tmp is not None:
            tmp.cleanup()
    res["targets"] = report.evaluate_targets(res, cfg.model, cfg.image_size, bool(info["trained"]))
    res["meta"] = {"run_id": run_id, "started": start.isoformat(timespec="seconds"),
                   "duration_s": time.perf_counter() - t0, "model": cfg.model, "image_size": cfg.image_size,
                   "trained": bool(info["trained"]), "checkpoint": ckpt,
                   "checkpoint_sha256": info.get("checkpoint_sha256"), "threads": cfg.threads, "quick": cfg.quick,
                   "command": cfg.command(), "config": asdict(cfg), "plots": [],
                   "suite_seconds": clock}
    _write_outputs(res, out, cfg)
    return res


def _write_outputs(res: dict, out: Path, cfg: BenchConfig) -> None:
    """Suite JSONs, plots, summary.md and BENCHMARKS.md."""
    from bench import plots

    meta = res["meta"]
    title = f"{meta['model']} @ {meta['image_size']}, {meta['threads']} threads, run {meta['run_id']}"
    torch_bytes = 4 * res["model_info"]["parameters"]["total"] if res.get("model_info") else None
    pts = plots.variant_points(res.get("latency"), res.get("sizes"), res.get("accuracy"), torch_bytes)
    acc_size = (res.get("accuracy") or {}).get("image_size")
    acc_title = title if acc_size in (None, meta["image_size"]) else \
        f"{title}; latency and size at {meta['image_size']} px, mIoU at {acc_size} px"
    for made in (plots.plot_tradeoffs(pts, out / "accuracy_tradeoffs.png", acc_title),
                 plots.plot_latency(res.get("latency"), out / "latency_speedup.png", title)):
        if made is not None:
            meta["plots"].append(str(made))
    for key in ("conversion", "sizes", "peak", "latency", "accuracy", "everything", "decoder_split", "everything_suite"):
        if key in res:
            _write_json(out / f"{key}.json", {"run_id": meta["run_id"], **res[key]})
    _write_json(out / "run.json", {"run_id": meta["run_id"], "meta": meta, "machine": res["machine"],
                                   "model_info": res.get("model_info"), "targets": res["targets"]})
    (out / "summary.md").write_text(report.render_markdown(res, "Benchmark summary", ""))
    if cfg.benchmarks_md:
        md = Path(cfg.benchmarks_md)
        try:
            prefix = str(out.resolve().relative_to(md.resolve().parent)) + "/"
        except ValueError:
            prefix = str(out.resolve()) + "/"
        md.write_text(report.render_markdown(res, "Benchmarks", prefix))

