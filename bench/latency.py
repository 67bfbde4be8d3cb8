"""Latency suite: image encoder and prompt decoder (1 prompt, a full K=16 batch) per backend/precision.

Every model runs at the same thread count on the same inputs: warm-up runs first, then the median
of `repeats` timed runs. Ratios are against torch eager fp32 measured in the same run. The CoreML
emulator is a numpy interpreter of the .mlpackage (no CoreML runtime exists on Linux): its rows
(encoder and the K=1 decoder) are run once and marked `correctness_only`; their times say nothing
about a phone. Core AI rows run in coreai-core's Linux runtime, Apple's real one but CPU-only and
single-threaded (15-19x slower than torch eager here): they are timed (1 warm-up, 3 runs) and also
marked `correctness_only`; they say nothing about an iPhone or a Mac either.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.timing import time_fn
from mobile_runtime.package_format import LABEL

DECODER_ROLES = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input")
# How the bench tables name each target's runtime; a target without a label here shows its own name.
BACKEND_LABEL = {"onnx": "onnxruntime", "tflite": "litert", "coreml": "coreml-emulator",
                 "coreai": "coreai-linux-cpu"}
CORE_AI_RUNS = (1, 3)  # warm-up, timed runs of the (slow, correctness-only) Linux Core AI runtime


def backend_label(target: str) -> str:
    """Bench label of the runtime that runs `target` packages."""
    return BACKEND_LABEL.get(target, target)


def make_inputs(image_size: int, embed: int, slots: int = 8, seed: int = 0) -> dict:
    """Seeded encoder input and decoder prompts for K in {1, 16}: one positive point + SAM's pad point,
    the other slots empty (`LABEL.EMPTY_SLOT`), as the runtime assembles a single click."""
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((1, 3, image_size, image_size)).astype(np.float32)
    prompts = {}
    for k in (1, 16):
        coords = np.zeros((k, slots, 2), np.float32)
        coords[:, 0] = rng.uniform(0, image_size, (k, 2))
        labels = np.full((k, slots), float(LABEL.EMPTY_SLOT), np.float32)
        labels[:, 0], labels[:, 1] = 1.0, -1.0
        low = 4 * embed
        prompts[k] = {"point_coords": coords, "point_labels": labels,
                      "mask_input": np.zeros((k, 1, low, low), np.float32),
                      "has_mask_input": np.zeros((k,), np.float32)}
    return {"image": image, "prompts": prompts}


def rel_error(a: np.ndarray, ref: np.ndarray) -> float:
    """||a - ref|| / ||ref|| (0 when both are zero)."""
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    den = float(np.linalg.norm(ref))
    return float(np.linalg.norm(a - ref)) / den if den else float(np.linalg.norm(a))


def torch_rows(model, inputs: dict, warmup: int, repeats: int, threads: int) -> tuple[list[dict], dict]:  # noqa: ANN001
    """Torch eager fp32 rows and the reference outputs every other backend is compared with."""
    import torch

    torch.set_num_threads(threads)
    x = torch.from_numpy(inputs["image"])
    with torch.inference_mode():
        emb = model.encode_image(x)
        rows = [{"part": "encoder", **time_fn(lambda: model.encode_image(x), warmup, repeats)}]
        refs = {"encoder": emb.numpy().copy()}
        for k, p in inputs["prompts"].items():
            args = [torch.from_numpy(p[r]) for r in DECODER_ROLES[1:]]
            low, iou = model.decode_prompts(emb, *args)
            refs[f"decoder_k{k}"] = low.numpy().copy()
            t = time_fn(lambda a=args: model.decode_prompts(emb, *a), warmup, repeats)
            rows.append({"part": f"decoder_k{k}", **t})
    for r in rows:
        r.update(backend="torch", precision="fp32", correctness_only=False, rel_error=0.0)
    return rows, refs


def _bind(entries: list[dict], model, roles: tuple[str, ...]) -> dict[str, str]:  # noqa: ANN001
    """Logical role -> backend tensor name (manifest order, `logical_name` when present)."""
    names = [e["name"] for e in entries]
    if not all(n in model.input_names for n in names):
        names = list(model.input_names)
    return {e.get("logical_name", roles[i]): n for i, (e, n) in enumerate(zip(entries, names))}


def package_rows(package: Path, inputs: dict, refs: dict, warmup: int, repeats: int, threads: int) -> list[dict]:
    """Rows of one package, models opened straight from its manifest with `open_model`."""
    from mobile_runtime.backends import open_model

    manifest = json.loads((Path(package) / "manifest.json").read_text())
    kind, precision = manifest["target"], manifest["precision"]
    emulated = kind == "coreml" and not _has_coreml_runtime()
    linux_coreai = kind == "coreai" and not _has_coreml_runtime()
    w, n = (0, 1) if emulated else CORE_AI_RUNS if linux_coreai else (warmup, repeats)
    enc = manifest["models"]["encoder"]
    model = open_model(Path(package) / enc["file"], kind, threads, enc.get("signature"))
    feed = {_bind(enc["inputs"], model, ("image",))["image"]: inputs["image"]}
    out_name = enc["outputs"][0]["name"]
    out_name = out_name if out_name in model.output_names else model.output_names[0]
    emb = np.asarray(model.run(feed)[out_name], np.float32)
    rows = [{"part": "encoder", **time_fn(lambda: model.run(feed), w, n), "rel_error": rel_error(emb, refs["encoder"])}]
    dec = manifest["models"]["decoder"]
    for k_str, var in sorted(dec.get("variants", {}).items(), key=lambda kv: int(kv[0])):
        k = int(k_str)
        if k not in inputs["prompts"] or (emulated and k > 1):  # emulator: K=1 suffices for correctness
            continue
        dm = open_model(Path(package) / var.get("file", dec.get("file")), kind, threads, var.get("signature"))
        names = _bind(dec["inputs"], dm, DECODER_ROLES)
        values = {"image_embeddings": refs["encoder"], **inputs["prompts"][k]}
        dfeed = {names[r]: values[r] for r in DECODER_ROLES}
        low_name = dec["outputs"][0]["name"]
        low_name = low_name if low_name in dm.output_names else dm.output_names[0]
        low = np.asarray(dm.run(dfeed)[low_name], np.float32)
        t = time_fn(lambda d=dm, f=dfeed: d.run(f), w, n)
        rows.append({"part": f"decoder_k{k}", **t, "rel_error": rel_error(low, refs[f"decoder_k{k}"])})
    for r in rows:
        r.update(backend=backend_label(kind), precision=precision, correctness_only=emulated or linux_coreai,
                 package=Path(package).name)
    return rows


def _has_coreml_runtime() -> bool:
    import sys

    return sys.platform == "darwin"


def add_ratios(rows: list[dict], encoder_macs: int | None, peak_gflops: float | None) -> list[dict]:
    """Speed-up vs torch eager fp32 of the same part (same run), per-prompt times, encoder peak share."""
    base = {r["part"]: r["median_s"] for r in rows if r["backend"] == "torch" and r["precision"] == "fp32"}
    out = []
    for r in rows:
        r = dict(r)
        r["speedup_vs_torch_fp32"] = base[r["part"]] / r["median_s"] if r["part"] in base else None
        if r["part"].startswith("decoder_k"):
            r["per_prompt_s"] = r["median_s"] / int(r["part"][len("decoder_k"):])
        if r["part"] == "encoder" and encoder_macs and peak_gflops:
            from bench.peak import peak_share

            r["peak_share"] = peak_share(encoder_macs, r["median_s"], peak_gflops)
        out.append(r)
    return out


def run_latency(model, packages: list[Path], image_size: int, warmup: int, repeats: int, threads: int,  # noqa: ANN001
                encoder_macs: int | None, peak_gflops: float | None, progress=None) -> dict:  # noqa: ANN001
    """Latency suite: torch eager fp32 first, then every package; ratios from this run only."""
    say = progress or (lambda m: None)
    inputs = make_inputs(image_size, model.embedding_size)
    say("latency: torch eager fp32")
    rows, refs = torch_rows(model, inputs, warmup, repeats, threads)
    errors = []
    for p in packages:
        say(f"latency: {Path(p).name}")
        try:
            rows.extend(package_rows(p, inputs, refs, warmup, repeats, threads))
        except Exception as exc:  # noqa: BLE001 - one broken package must not hide the others
            errors.append({"package": Path(p).name, "error": str(exc).splitlines()[0] if str(exc) else repr(exc)})
    return {"threads": threads, "warmup": warmup, "repeats": repeats, "encoder_macs": encoder_macs,
            "peak_gflops": peak_gflops, "rows": add_ratios(rows, encoder_macs, peak_gflops), "errors": errors}
