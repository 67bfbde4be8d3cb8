"""Machine description, target checks (PASS/MISS) and the markdown tables of a benchmark run."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

LIBRARIES = ("torch", "numpy", "onnx", "onnxruntime", "ai-edge-litert", "litert-torch", "coremltools", "executorch", "matplotlib")
GB = 1e9


def machine_info() -> dict:
    """CPU model, cores, RAM, OS, Python and library versions, and the load average right now."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    ram = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) * 1024
    except OSError:
        pass
    os_name = platform.platform()
    try:
        rel = dict(ln.split("=", 1) for ln in Path("/etc/os-release").read_text().splitlines() if "=" in ln)
        os_name = f"{rel.get('PRETTY_NAME', '').strip(chr(34))} (kernel {platform.release()})"
    except OSError:
        pass
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "ram_bytes": ram, "os": os_name,
            "python": platform.python_version(), "libraries": versions, "load_average": list(os.getloadavg())}


def _status(ok: bool | None) -> str:
    return "N/A" if ok is None else ("PASS" if ok else "MISS")


def evaluate_targets(res: dict, model: str, image_size: int, trained: bool = True) -> list[dict]:
    """The project's targets checked against this run's numbers; never hides a miss.

    The mixed-precision accuracy target is checked two ways: the mIoU drop against ground truth
    (meaningful with trained weights only) and 1 - mask IoU against the torch fp32 masks on the same
    prompts (what the quantization changes, whatever the weights)."""
    applies = model == "tinysam" and image_size == 1024
    note = "" if applies else f"measured at {model}@{image_size}, not the target configuration (tinysam@1024)"
    out = []

    def add(name: str, value, threshold: str, ok: bool | None, why: str = "") -> None:  # noqa: ANN001
        out.append({"target": name, "value": value, "threshold": threshold, "status": _status(ok),
                    "applies": applies, "note": "; ".join(x for x in (why, note) if x)})

    lat = [r for r in (res.get("latency") or {}).get("rows", []) if r["part"] == "encoder"]
    pkg = [r for r in lat if r["backend"] != "torch" and not r["correctness_only"]]
    if pkg:
        best = max(pkg, key=lambda r: r["speedup_vs_torch_fp32"])
        add("best encoder package vs torch eager fp32", round(best["speedup_vs_torch_fp32"], 2), ">= 4.0x",
            best["speedup_vs_torch_fp32"] >= 4.0, f"{best['backend']} {best['precision']}")
    else:
        add("best encoder package vs torch eager fp32", None, ">= 4.0x", None, "no package latency measured")
    lite = [r for r in lat if r["backend"] == "litert" and r["precision"] == "fp32" and "peak_share" in r]
    add("LiteRT fp32 encoder share of fp32 peak", round(lite[0]["peak_share"], 3) if lite else None, ">= 0.45",
        lite[0]["peak_share"] >= 0.45 if lite else None, "" if lite else "no LiteRT fp32 encoder row")
    lite_ms = {r["precision"]: r["median_s"] for r in lat if r["backend"] == "litert" and "median_s" in r}
    if "fp32" in lite_ms:
        for prec in [p for p in ("mixed", "int8", "w8a8") if p in lite_ms]:
            ratio = lite_ms["fp32"] / lite_ms[prec]
            # the PTQ goal is set for mixed; int8 and w8a8 show what int8 arithmetic gives here
            add(f"LiteRT {prec} encoder vs LiteRT fp32", round(ratio, 2), ">= 2.0x", ratio >= 2.0 if prec == "mixed"
                else None, "" if prec == "mixed" else "for reference: the goal is set for mixed")
    for r in (res.get("sizes") or {}).get("rows", []):
        if r["precision"] == "mixed":
            ratio = r["ratio_to_fp32"]
            judged = r["target"] == "tflite"  # the goal sets the size limit for LiteRT; the others are reported
            add(f"{r['target']} mixed size vs fp32 (whole package)", None if ratio is None else round(ratio, 3),
                "<= 0.30" if judged else "-", None if ratio is None or not judged else ratio <= 0.30,
                "no fp32 package to compare" if ratio is None else "" if judged else "for reference: the size limit is LiteRT's")
    for r in (res.get("accuracy") or {}).get("rows", []):
        if r["precision"] == "mixed":
            drop = max(r["drop_1pt"], r["drop_3pt"], r["drop_box"])
            add(f"{r['backend']} mixed mIoU drop vs torch fp32 (ground truth)", round(drop, 4), "<= 0.01",
                drop <= 0.01, "" if trained else "UNTRAINED weights: a drop against ground truth means little")
            gap = 1.0 - min(r["agreement_1pt"], r["agreement_box"])
            add(f"{r['backend']} mixed 1 - mask IoU vs torch fp32 masks", round(gap, 4), "<= 0.01", gap <= 0.01,
                "same prompts (first click, box), worst of the two")
    for r in (res.get("conversion") or {}).get("rows", []):
        if "skipped" in r:  # a precision the target does not build (Capabilities.refused): no target to meet
            continue
        if "error" in r:
            add(f"convert {r['target']}/{r['precision']}", None, "< 300 s and < 8 GB", False, r["error"][:120])
            continue
        ok = r["wall_s"] < 300 and r["max_rss_bytes"] < 8 * GB
        add(f"convert {r['target']}/{r['precision']}", f"{r['wall_s']:.0f} s, {r['max_rss_bytes'] / GB:.2f} GB",
            "< 300 s and < 8 GB", ok)
    return out


def _f(x, fmt: str = "{:.3f}") -> str:  # noqa: ANN001
    return "-" if x is None else fmt.format(x)


def _ms(s) -> str:  # noqa: ANN001
    return "-" if s is None else f"{1000 * s:.1f}"


def md_table(head: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def latency_md(lat: dict) -> str:
    """Latency table (ms), speed-ups and encoder peak share."""
    rows = []
    for r in lat["rows"]:
        flag = ""
        if r["correctness_only"]:
            flag = (" (Core AI Linux runtime, CPU, single-threaded: correctness only, not a device speed)"
                    if r["backend"].startswith("coreai") else " (emulator: correctness only, 1 run)")
        rows.append([r["backend"] + flag, r["precision"], r["part"], _ms(r["median_s"]), _ms(r["min_s"]),
                     _ms(r.get("per_prompt_s")), _f(r["speedup_vs_torch_fp32"], "{:.2f}x"),
                     _f(r.get("peak_share"), "{:.1%}"), _f(r["rel_error"], "{:.2e}")])
    head = ["backend", "precision", "part", "median ms", "min ms", "ms/prompt", "vs torch fp32",
            "share of fp32 peak", "rel. error vs torch"]
    errs = "".join(f"\n- {e['package']}: {e['error']}" for e in lat.get("errors", []))
    return md_table(head, rows) + (f"\n\nFailed:{errs}" if errs else "")


def sizes_md(sizes: dict) -> str:
    """Size table: model files and totals per package."""
    rows = [[r["target"], r["precision"], ", ".join(f"{k} {v / 1e6:.2f}" for k, v in r["files"].items()),
             f"{r['model_bytes'] / 1e6:.2f}", f"{r['total_bytes'] / 1e6:.2f}", _f(r["ratio_to_fp32"], "{:.3f}")]
            for r in sizes["rows"]]
    return md_table(["target", "precision", "files (MB)", "model MB", "total MB", "total vs fp32"], rows)


def conversion_md(conv: dict) -> str:
    """Conversion wall time and peak memory per target and precision."""
    rows = [[r["target"], r["precision"], "-", "-", "-", "not supported: " + r["skipped"][:90]] if "skipped" in r else
            [r["target"], r["precision"], f"{r['wall_s']:.1f}", f"{r['max_rss_bytes'] / GB:.2f}",
             _f(r.get("convert_s"), "{:.1f}"), r.get("error", "ok")[:100]] for r in conv["rows"]]
    return md_table(["target", "precision", "wall s (subprocess)", "peak RSS GB", "convert() s", "result"], rows)


def accuracy_md(acc: dict) -> str:
    """mIoU per protocol, drop and agreement vs torch fp32."""
    rows = [[r["backend"], r["precision"], r["instances"], _f(r["miou_1pt"]), _f(r["miou_3pt"]), _f(r["miou_box"]),
             _f(max(r["drop_1pt"], r["drop_3pt"], r["drop_box"]), "{:+.4f}"), _f(r["agreement_1pt"]),
             _f(r["agreement_box"])] for r in acc["rows"]]
    head = ["backend", "precision", "instances", "mIoU 1pt", "mIoU 3pt", "mIoU box", "worst drop vs torch fp32",
            "agreement 1pt", "agreement box"]
    skipped = "".join(f"\n- {s['package']}: {s['reason']}" for s in acc.get("skipped", []))
    size = (f" Models and packages at {acc['image_size']} px (converted for this suite; the shipped weights were "
            "trained at this size)." if acc.get("image_size") else "")
    return f"Data: {acc['data']}.{size}\n\n" + md_table(head, rows) + (f"\n\nNot evaluated:{skipped}" if skipped else "")


def targets_md(targets: list[dict]) -> str:
    """PASS/MISS table."""
    return md_table(["target", "measured", "threshold", "status", "note"],
                    [[t["target"], "-" if t["value"] is None else t["value"], t["threshold"], f"**{t['status']}**",
                      t["note"]] for t in targets])


def machine_md(m: dict) -> str:
    """One paragraph describing the machine."""
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v)
    ram = f"{m['ram_bytes'] / 2**30:.1f} GiB" if m.get("ram_bytes") else "unknown"
    load = ", ".join(f"{x:.2f}" for x in m["load_average"])
    return (f"- CPU: {m['cpu']} ({m['cores']} cores, {m['usable_cores']} usable)\n- RAM: {ram}\n- OS: {m['os']}\n"
            f"- Python {m['python']}; {libs}\n- load average at start: {load}")


def render_markdown(res: dict, title: str, image_prefix: str) -> str:
    """The whole report: configuration, machine, targets, then one section per suite that ran."""
    meta = res["meta"]
    parts = [f"# {title}", "", f"Run `{meta['run_id']}` ({meta['started']}, {meta['duration_s']:.0f} s), "
             f"model **{meta['model']} @ {meta['image_size']}**"
             f"{' (UNTRAINED seeded weights)' if not meta['trained'] else ''}, {meta['threads']} threads"
             f"{', QUICK configuration' if meta['quick'] else ''}.", "", "Reproduce with:", "",
             f"```\n{meta['command']}\n```", "", "Seconds per suite: " + (", ".join(
                 f"{k} {v:.0f}" for k, v in meta.get("suite_seconds", {}).items()) or "-") + ".", "", "## Machine", "", machine_md(res["machine"]), ""]
    parts += ["## Targets", "", targets_md(res["targets"]), ""]
    if res.get("peak"):
        p = res["peak"]
        parts += ["## Measured fp32 peak", "", f"fastest float32 matmul over sizes and BLAS engines ({p['engine']}, {p['n']}x{p['n']}), "
                  f"{p['threads']} threads: "
                  f"best {p['gflops_best']:.1f} GFLOP/s, median {p['gflops_median']:.1f} GFLOP/s. Encoder MACs "
                  f"(torch FlopCounter, matmul + conv): {res['latency']['encoder_macs'] / 1e9:.2f} G."
                  if res.get("latency") and res["latency"].get("encoder_macs") else
                  f"best {p['gflops_best']:.1f} GFLOP/s", ""]
    sections = (("latency", "Latency", latency_md), ("sizes", "Package sizes", sizes_md),
                ("conversion", "Conversion", conversion_md), ("accuracy", "Accuracy", accuracy_md))
    for key, name, fn in sections:
        if res.get(key):
            parts += [f"## {name}", "", fn(res[key]), ""]
    if res.get("everything"):
        ev = res["everything"]
        body = f"Not run: {ev['skipped']}" if "skipped" in ev else everything_md(ev)
        parts += ["## Everything mode", "", body, ""]
    from bench import everything_report as er

    for key, name, fn in (("decoder_split", "Prompt decoder: full vs split", er.decoder_split_md),
                          ("everything_suite", "Everything mode on held-out scenes and photos", er.everything_suite_md)):
        if res.get(key) and "skipped" not in res[key]:
            parts += [f"## {name}", "", fn(res[key]), ""]
    from bench.train_report import training_md

    train = training_md()
    if train:
        parts += ["## Training throughput (distillation trainer)", "", train, ""]
    for plot in meta.get("plots", []):
        parts += [f"![{Path(plot).stem}]({image_prefix}{Path(plot).name})", ""]
    return "\n".join(parts).rstrip() + "\n"


def everything_md(ev: dict) -> str:
    """Everything-mode runs (from bench/everything_speed.py) as a table, else the raw JSON."""
    runs = ev.get("runs")
    if not isinstance(runs, dict):
        return f"```\n{_compact(ev)}\n```"
    rows = [[name, r.get("backend"), r.get("prompts_decoded"), r.get("decoder_calls") or "-",
             _f(r.get("seconds_median"), "{:.2f}"), r.get("masks"), _f(r.get("miou_vs_dense"), "{:.4f}")]
            for name, r in runs.items()]
    head = ["run", "backend", "prompts decoded", "decoder calls", "median s", "masks", "agreement with dense"]
    extra = ev.get("speedup_hierarchical_runtime_vs_dense_runtime")
    tail = f"\n\nHierarchical runtime vs dense runtime: {extra}x. Command: `{ev.get('command', '-')}`." if extra else ""
    return md_table(head, rows) + tail


def _compact(obj) -> str:  # noqa: ANN001
    import json

    return json.dumps(obj, indent=1, default=str)[:4000]
