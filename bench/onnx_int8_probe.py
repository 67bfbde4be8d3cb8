"""Why ONNX Runtime's int8 encoder is not faster: onnxruntime's own quantizers on the fp32 encoder, timed
and profiled.

Variants of one fp32 `encoder.onnx` (a package's, e.g. `cli.py convert --target onnx --precision fp32
--image-size 1024`):
- `static_qoperator` / `static_qdq`: `quantize_static`, per-channel int8 weights, uint8 activations,
  MatMul/Conv/Gemm, after `quant_pre_process`; calibration on the timing input itself (speed only: the
  scales do not change the kernels that run);
- `dynamic`: `quantize_dynamic`, per-channel int8 weights, MatMul/Conv/Gemm.
Each is timed interleaved with fp32 (`threads` intra-op threads, median of `repeats`) and profiled once
(ORT's profiler: share of kernel time per op type). Writes `bench/results/onnx_int8_probe.json`.
Accuracy is not measured here (`bench/ptq.py` measures the packages).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OPS = ["MatMul", "Conv", "Gemm"]


def _session(path: Path, threads: int, profile: str | None = None):  # noqa: ANN202 - an InferenceSession
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    if profile:
        so.enable_profiling, so.profile_file_prefix = True, profile
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def variants(src: Path, work: Path, x: np.ndarray) -> dict[str, Path]:
    """The quantized encoders (written into `work`)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = _session(src, 1).get_inputs()[0].name

    class Once(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{name: x}])

        def get_next(self) -> dict | None:
            return next(self.items, None)

    pre = work / "pre.onnx"
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    out = {"fp32": src}
    for fmt in ("QOperator", "QDQ"):
        out[f"static_{fmt.lower()}"] = work / f"static_{fmt}.onnx"
        quantize_static(str(pre), str(out[f"static_{fmt.lower()}"]), Once(), quant_format=getattr(QuantFormat, fmt),
                        per_channel=True, op_types_to_quantize=OPS, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
    out["dynamic"] = work / "dynamic.onnx"
    quantize_dynamic(str(src), str(out["dynamic"]), per_channel=True, op_types_to_quantize=OPS, weight_type=QuantType.QInt8)
    return out


def op_shares(path: Path, x: np.ndarray, threads: int, runs: int = 3) -> dict:
    """Share of kernel time per op type over `runs` runs, and the profiled ms per run."""
    with tempfile.TemporaryDirectory(prefix="ortprof-") as tmp:
        s = _session(path, threads, str(Path(tmp) / "p"))
        name = s.get_inputs()[0].name
        for _ in range(runs):
            s.run(None, {name: x})
        events = json.loads(Path(s.end_profiling()).read_text())
    by: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by[e["args"]["op_name"]] += e["dur"]
    total = sum(by.values())
    return {"ms_per_run": round(total / runs / 1000, 1), "shares": {k: round(v / total, 3) for k, v in by.most_common(12)}}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("encoder", help="an fp32 package's encoder.onnx")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "onnx_int8_probe.json"))
    a = ap.parse_args(argv)
    src = Path(a.encoder)
    if not src.is_file():
        raise SystemExit(f"no such encoder: {src}")
    size = _session(src, 1).get_inputs()[0].shape[-1]
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="onnx-int8-") as tmp:
        paths = variants(src, Path(tmp), x)
        sessions = {k: _session(p, a.threads) for k, p in paths.items()}
        name = sessions["fp32"].get_inputs()[0].name
        for s in sessions.values():
            s.run(None, {name: x})
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for _ in range(a.repeats):
            for k, s in sessions.items():
                t0 = time.perf_counter()
                s.run(None, {name: x})
                times[k].append(time.perf_counter() - t0)
        profiles = {k: op_shares(p, x, a.threads) for k, p in paths.items()}
    med = {k: float(np.median(v)) * 1000 for k, v in times.items()}
    res = {"kind": "onnx int8 probe", "image_size": size, "threads": a.threads, "repeats": a.repeats,
           "encoder_ms": {k: round(v, 1) for k, v in med.items()},
           "speedup_vs_fp32": {k: round(med["fp32"] / v, 3) for k, v in med.items()},
           "times_ms": {k: [round(t * 1000, 1) for t in v] for k, v in times.items()}, "profiles": profiles}
    for k in med:
        top = ", ".join(f"{op} {s:.0%}" for op, s in list(profiles[k]["shares"].items())[:5])
        print(f"{k:17s} {med[k]:7.1f} ms  {med['fp32'] / med[k]:.2f}x   {top}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
