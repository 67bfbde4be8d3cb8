"""How fast can int8 make the LiteRT encoder on this CPU? An upper bound, accuracy ignored.

    .venv/bin/python bench/litert_int8_ceiling.py [--image-size 1024] [--threads 2]

Takes the float LiteRT TinySAM encoder (as `convert` builds it) and quantizes with litert-quantizer's
own min/max calibration on random inputs:
- `fc_conv`: every FULLY_CONNECTED, CONV_2D and DEPTHWISE_CONV_2D static int8 (including the
  post-GELU fc2 layers, whose twin-uniform range the w8a8 package quantizes per row at run time instead);
- `fc_conv_bmm`: the same plus the attention products (BATCH_MATMUL);
- `fc_dynamic_conv`: FULLY_CONNECTED dynamic-range (XNNPACK quantizes each row of its input at run
  time and writes float: no QUANTIZE/DEQUANTIZE pair around it), convolutions static int8.
Then times each against the float model in the same process (median of repeated runs). No model
here is meant to ship: the masks are not checked. It bounds what any int8 or mixed plan can gain
from LiteRT's int8 kernels here. Writes JSON (default bench/results/litert_int8_ceiling.json).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.timing import time_fn  # noqa: E402 - after the path fix above

CONV = ("CONV_2D", "DEPTHWISE_CONV_2D")
# variant -> (ops static int8, ops dynamic-range int8)
VARIANTS = {"fc_conv": (("FULLY_CONNECTED", *CONV), ()),
            "fc_conv_bmm": (("FULLY_CONNECTED", *CONV, "BATCH_MATMUL"), ()),
            "fc_dynamic_conv": (CONV, ("FULLY_CONNECTED",))}


def _int8(src: Path, dst: Path, ops: tuple[tuple[str, ...], tuple[str, ...]], samples: list[dict]) -> None:
    from litert_quantizer import qtyping, quantizer, recipe_manager

    from converters.backends.litert.int8_moves import move_int8_data
    from converters.logs import quiet

    rm = recipe_manager.RecipeManager()
    static, dynamic = ops
    for op in static:
        rm.add_static_config(".*", qtyping.TFLOperationName(op), 8, 8)
    for op in dynamic:
        rm.add_dynamic_config(".*", qtyping.TFLOperationName(op), 8)
    with quiet():
        q = quantizer.Quantizer(str(src))
        q.load_quantization_recipe(rm.get_quantization_recipe())
        q.quantize(q.calibrate({"serving_default": samples})).export_model(str(dst), overwrite=True)
    move_int8_data(dst)  # as the w8a8 package: data movement on int8, pads folded into the convolutions


def _latency(path: Path, x: np.ndarray, threads: int, warmup: int, repeats: int) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    return time_fn(it.invoke, warmup, repeats)


def run(image_size: int = 1024, threads: int = 2, warmup: int = 2, repeats: int = 6, say=print) -> dict:  # noqa: ANN001
    """Build the float and int8 variants, time them; the result dict."""
    from converters.api import load_model
    from converters.backends.litert.compact import compact_tflite_biases
    from converters.backends.litert.export import float_encoder
    from converters.spec import ExportSpec
    from tinysam.defaults import find_default_weights

    found = find_default_weights("tinysam")  # trained weights: a seeded model's zero attention biases fold away
    model, info = load_model("tinysam", str(found.path) if found else None, image_size)
    rng = np.random.default_rng(0)
    samples = [{"args_0": rng.uniform(-2, 2, (1, 3, image_size, image_size)).astype(np.float32)} for _ in range(2)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="int8-ceiling-") as tmp:
        src = Path(tmp) / "encoder_fp32.tflite"
        say("converting the float encoder")
        float_encoder(model, ExportSpec(model.config, "tflite", "fp32"), src)
        compact_tflite_biases(src, model)
        base = _latency(src, samples[0]["args_0"], threads, warmup, repeats)
        rows.append({"variant": "fp32", "median_s": base["median_s"], "times_s": base["times_s"],
                     "bytes": src.stat().st_size, "speedup_vs_fp32": 1.0})
        say(f"fp32 {base['median_s'] * 1000:.1f} ms")
        for name, ops in VARIANTS.items():
            dst = Path(tmp) / f"{name}.tflite"
            try:
                _int8(src, dst, ops, samples)
                t = _latency(dst, samples[0]["args_0"], threads, warmup, repeats)
            except Exception as exc:  # noqa: BLE001 - a variant LiteRT cannot build is a result too
                rows.append({"variant": name, "static": list(ops[0]), "dynamic": list(ops[1]), "failed": str(exc).splitlines()[0][:200]})
                say(f"{name} FAILED")
                continue
            rows.append({"variant": name, "static": list(ops[0]), "dynamic": list(ops[1]), "median_s": t["median_s"], "times_s": t["times_s"],
                         "bytes": dst.stat().st_size, "speedup_vs_fp32": base["median_s"] / t["median_s"]})
            say(f"{name} {t['median_s'] * 1000:.1f} ms, {base['median_s'] / t['median_s']:.2f}x vs fp32")
    return {"what": __doc__.splitlines()[0], "image_size": image_size, "threads": threads, "repeats": repeats,
            "trained": bool(info["trained"]), "rows": rows}


def main(argv: list[str] | None = None) -> dict:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "litert_int8_ceiling.json")
    a = ap.parse_args(argv)
    res = run(a.image_size, a.threads, repeats=a.repeats, say=lambda m: print(m, file=sys.stderr, flush=True))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    for r in res["rows"]:
        print(f"{r['variant']:16s} " + (f"FAILED: {r['failed']}" if "failed" in r else
                                         f"{r['median_s'] * 1000:8.1f} ms  {r['speedup_vs_fp32']:.2f}x  "
                                         f"{r['bytes'] / 1e6:.1f} MB"))
    return res


if __name__ == "__main__":
    main()
