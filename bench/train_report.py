"""The distillation trainer's section of BENCHMARKS.md, from the JSONs its bench scripts write
(``train_throughput.json``, ``train_compile_cpu.json``, ``gpu_train_check.json``)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.report import _f, md_table

RESULTS = Path(__file__).resolve().parent / "results"


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _rows(rows: list[dict]) -> str:
    head = ["input px", "batch", "compile", "images/s", "prompts/s", "step s", "data s", "forward s", "backward s",
            "optimizer s"]
    return md_table(head, [[r["image_size"], r["batch_size"], "yes" if r.get("compile") else "no",
                            _f(r["images_per_s"], "{:.2f}"), _f(r["prompts_per_s"], "{:.1f}"),
                            _f(r["median_step_s"], "{:.2f}"), _f(r["median_data_s"], "{:.3f}"),
                            _f(r["median_forward_s"], "{:.2f}"), _f(r["median_backward_s"], "{:.2f}"),
                            _f(r["median_optimizer_s"], "{:.2f}")] for r in rows])


def training_md(results: Path = RESULTS) -> str | None:
    """Markdown for the trainer's throughput results in ``results``, or None if there are none."""
    cpu = _read(results / "train_throughput.json")
    if cpu is None:
        return None
    load = ", ".join(f"{x:.1f}" for x in cpu.get("load_average_end", []))
    parts = [f"`bench/train_throughput.py`: `cli.py distill` runs (kd stage, TinySAM student, mobilesam teacher, "
             f"teacher embeddings cached, hard prompts + hard mask weighting, up to 16 prompts per image, fp32) on "
             f"the CPU with {cpu.get('threads')} thread(s); medians over the steps after the first. The machine "
             f"was shared with other jobs (load average {load} at the end), so these are lower bounds.", "",
             _rows(cpu["rows"])]
    comp = _read(results / "train_compile_cpu.json")
    if comp is not None:
        eager = {(r["image_size"], r["batch_size"]): r for r in comp["rows"] if not r["compile"]}
        for r in (r for r in comp["rows"] if r["compile"]):
            base = eager.get((r["image_size"], r["batch_size"]))
            if base:
                parts += ["", f"`--compile` on the CPU ({r['image_size']} px, batch {r['batch_size']}): "
                          f"{r['images_per_s']:.2f} img/s against {base['images_per_s']:.2f} eager "
                          f"({r['images_per_s'] / base['images_per_s']:.2f}x), after a first step of "
                          f"{r['first_step_s']:.0f} s spent compiling."]
    gpu = _read(results / "gpu_train_check.json")
    if gpu is None:
        parts += ["", "GPU: not measured yet (`bench/gpu_train_check.py` writes `gpu_train_check.json`)."]
    else:
        gpus = ", ".join(gpu.get("env", {}).get("gpus", [])) or "?"
        rows = [[t["image_size"], t["batch_size"], _f(t["trainer"]["images_per_s"], "{:.1f}"),
                 _f(t["raw_same_prompts"]["images_per_s"], "{:.1f}"), _f(t["trainer_vs_raw"], "{:.2f}"),
                 t["trainer_prompts_per_image"]] for t in gpu.get("throughput", []) if "trainer" in t]
        parts += ["", f"GPU ({gpus}, bf16):", "",
                  md_table(["input px", "batch", "trainer img/s", "raw model step img/s", "ratio", "prompts/image"],
                           rows)]
    return "\n".join(parts)
