"""The prompt decoder per prompt: the full decoder (what every package holds) against the split decoder
(`converters.fast_decoder`: per-image prep + per-prompt graph), fp32, in ONNX Runtime and LiteRT, K prompts
per call, timed interleaved in one process (same load for both), with the share of the fp32 matmul peak
and, for ONNX Runtime, where the time goes by op type (its profiler).

    python -m bench.decoder_split --image-size 1024 --threads 2 --out bench/results/decoder_split.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

FULL_K = (1, 16)
SPLIT_K = (1, 16, 64)


def _macs(module, args) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(*args)
    return counter.get_total_flops() // 2


def _onnx_graphs(model, spec, work: Path) -> dict[str, Path]:
    """The fp32 ONNX decoder graphs a package holds (full K variants, prep, split K variants)."""
    from converters.backends.onnx.compact import compact_file
    from converters.backends.onnx.export import _torch_export
    from converters.examples import decoder_sample, fast_decoder_sample
    from converters.fast_decoder import DecoderPrep, FastPromptDecoder
    from converters.wrappers import decoder_module

    out = {}
    dec_in, dec_out = [t.name for t in spec.decoder_inputs(1)], [t.name for t in spec.decoder_outputs(1)]
    for k in FULL_K:
        out[f"full_k{k}"] = work / f"full_k{k}.onnx"
        _torch_export(decoder_module(model), decoder_sample(spec, k), out[f"full_k{k}"], dec_in, dec_out)
    out["prep"] = work / "prep.onnx"
    _torch_export(DecoderPrep(model), decoder_sample(spec, 1)[:1], out["prep"], ["image_embeddings"],
                  [t.name for t in spec.prep_outputs()])
    for k in SPLIT_K:
        out[f"split_k{k}"] = work / f"split_k{k}.onnx"
        _torch_export(FastPromptDecoder(model), fast_decoder_sample(spec, k), out[f"split_k{k}"],
                      [t.name for t in spec.fast_decoder_inputs(1)], dec_out)
    for p in out.values():
        compact_file(p, model)
    return out


def _inputs(spec, kind: str, key: str, k: int, emb: np.ndarray, prepped: dict) -> dict[str, np.ndarray]:  # noqa: ANN001
    """Feeds of one variant, keyed by the backend's tensor names (ONNX: logical; LiteRT: args_N in order)."""
    from mobile_runtime.package_format import FAST_SLOTS, LABEL, N_SLOTS

    if key == "prep":
        roles = ["image_embeddings"]
    elif key.startswith("full"):
        roles = [t.name for t in spec.decoder_inputs(k)]
    else:
        roles = [t.name for t in spec.fast_decoder_inputs(k)]
    slots = N_SLOTS if key.startswith("full") else FAST_SLOTS
    rng = np.random.default_rng(k)
    labels = np.full((k, slots), float(LABEL.EMPTY_SLOT), np.float32)
    labels[:, :2] = (float(LABEL.POS), float(LABEL.PAD))  # everything mode's prompts: one point and its pad
    lr = spec.low_res_size
    values = {"image_embeddings": emb, **prepped, "point_labels": labels,
              "point_coords": (rng.random((k, slots, 2)) * spec.image_size).astype(np.float32),
              "mask_input": np.zeros((k, 1, lr, lr), np.float32), "has_mask_input": np.zeros((k,), np.float32)}
    names = roles if kind == "onnx" else [f"args_{i}" for i in range(len(roles))]
    return {n: values[r] for n, r in zip(names, roles)}


def _ort_profile(path: Path, feeds: dict, threads: int, runs: int = 3) -> dict[str, float]:
    """ms per call by ONNX Runtime op type (profiler, `runs` calls after one warm-up; its trace file goes to a
    temporary directory, never next to the model)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="ort-profile-") as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads, so.enable_profiling = threads, 1, True
        so.profile_file_prefix = str(Path(tmp) / path.stem)
        s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        for _ in range(runs + 1):
            s.run(None, feeds)
        events = json.loads(Path(s.end_profiling()).read_text())
    by: Counter = Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by[e["args"]["op_name"]] += e["dur"]
    return {op: round(us / (runs + 1) / 1000, 3) for op, us in by.most_common()}


def _package_models(pkg: Path, threads: int) -> tuple[dict, dict]:
    """(variant key -> opened model, variant key -> file) of an fp32 package's full and split decoders."""
    from mobile_runtime.backends import open_model

    m = json.loads((pkg / "manifest.json").read_text())
    kind, models = m["target"], m["models"]
    entries = {f"full_k{k}": v for k, v in models["decoder"]["variants"].items()}
    entries["prep"] = models["decoder_prep"]
    entries |= {f"split_k{k}": v for k, v in models["decoder_fast"]["variants"].items()}
    opened = {key: open_model(pkg / v["file"], kind, threads, v.get("signature")) for key, v in entries.items()}
    return opened, {key: pkg / v["file"] for key, v in entries.items()}


def run(image_size: int = 1024, threads: int = 2, repeats: int = 5, targets: tuple[str, ...] = ("onnx", "tflite"),
        packages: dict[str, Path] | None = None, progress=print) -> dict:  # noqa: ANN001
    import torch

    from bench.peak import measure_matmul_peak
    from converters.api import load_model
    from converters.backends.litert.export import float_decoder
    from converters.fast_decoder import DecoderPrep, FastPromptDecoder
    from converters.spec import ExportSpec
    from converters.wrappers import decoder_module
    from mobile_runtime.backends import open_model

    model, _ = load_model("tinysam", None, image_size, seed=0)
    e = model.embedding_size
    emb_t = torch.randn(1, 256, e, e, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        prepped_t = DecoderPrep(model)(emb_t)
    spec = ExportSpec(model.config, "onnx", "fp32")
    full_args = spec.adapter.decoder_example(model.config, 1)
    macs = {"full_per_prompt": _macs(decoder_module(model), (emb_t, *full_args[1:])),
            "prep_per_image": _macs(DecoderPrep(model), (emb_t,)),
            "split_per_prompt": _macs(FastPromptDecoder(model), spec.adapter.fast_decoder_example(model.config, 1))}
    emb = emb_t.numpy()
    prepped = {t.name: v.numpy() for t, v in zip(spec.prep_outputs(), prepped_t)}
    result: dict = {"image_size": image_size, "threads": threads, "repeats": repeats, "macs": macs, "runtimes": {}}
    with tempfile.TemporaryDirectory(prefix="decoder-split-") as tmp:
        work = Path(tmp)
        for target in targets:
            progress(f"decoder_split: building the {target} graphs at {image_size} px")
            t0 = time.perf_counter()
            if packages and target in packages:
                models, paths = _package_models(packages[target], threads)
            elif target == "onnx":
                paths = _onnx_graphs(model, spec, work)
                models = {key: open_model(p, "onnx", threads) for key, p in paths.items()}
            else:
                tspec = ExportSpec(model.config, "tflite", "fp32")
                float_decoder(model, tspec, work / "decoder.tflite")
                sigs = {f"full_k{k}": f"k{k}" for k in FULL_K} | {"prep": "prep"} | {
                    f"split_k{k}": f"fast_k{k}" for k in SPLIT_K}
                models = {key: open_model(work / "decoder.tflite", "tflite", threads, sig) for key, sig in sigs.items()}
            build_s = time.perf_counter() - t0
            kinds = {key: (int(key.rsplit("k", 1)[1]) if key != "prep" else 1) for key in models}
            feeds = {key: _inputs(spec, "onnx" if target == "onnx" else "tflite", key, k, emb, prepped)
                     for key, k in kinds.items()}
            for key, m in models.items():  # warm-up
                m.run(feeds[key])
            times: dict[str, list[float]] = {key: [] for key in models}
            for _ in range(repeats):  # interleaved: every variant sees the same load
                for key, m in models.items():
                    t = time.perf_counter()
                    m.run(feeds[key])
                    times[key].append(time.perf_counter() - t)
            rows = {key: {"k": kinds[key], "median_ms": 1000 * float(np.median(ts)),
                          "ms_per_prompt": 1000 * float(np.median(ts)) / kinds[key]} for key, ts in times.items()}
            entry = {"build_s": round(build_s, 1), "variants": rows}
            if target == "onnx":
                entry["profile_ms_by_op"] = {key: _ort_profile(paths[key], feeds[key], threads)
                                             for key in ("full_k16", "split_k16", "split_k64")}
            result["runtimes"][target] = entry
            progress(f"decoder_split: {target}: " + ", ".join(f"{k} {v['ms_per_prompt']:.1f}" for k, v in rows.items()))
    peak = measure_matmul_peak(threads=threads)
    result["peak_gflops"] = peak["gflops_best"]
    for entry in result["runtimes"].values():
        for key, row in entry["variants"].items():
            m = macs["prep_per_image"] if key == "prep" else macs["full_per_prompt" if key.startswith("full")
                                                                    else "split_per_prompt"] * row["k"]
            row["peak_share"] = 2.0 * m / (row["median_ms"] / 1000) / 1e9 / peak["gflops_best"]
        best_full = min((r["ms_per_prompt"], k) for k, r in entry["variants"].items() if k.startswith("full"))
        best_split = min((r["ms_per_prompt"], k) for k, r in entry["variants"].items() if k.startswith("split"))
        entry["best_full"], entry["best_split"] = best_full[1], best_split[1]
        entry["speedup_best"] = best_full[0] / best_split[0]
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--targets", default="onnx,tflite")
    ap.add_argument("--package", action="append", default=[],
                    help="an fp32 package at --image-size to time instead of exporting the graphs (repeatable)")
    ap.add_argument("--out", default="bench/results/decoder_split.json")
    a = ap.parse_args()
    packages = {json.loads((Path(p) / "manifest.json").read_text())["target"]: Path(p) for p in a.package}
    res = run(a.image_size, a.threads, a.repeats, tuple(a.targets.split(",")), packages)
    res["packages"] = {t: str(p) for t, p in packages.items()}
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
