"""LiteRT (TFLite) backend through `ai_edge_litert`, with signatures and quantized I/O."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from .base import check_inputs


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """float -> the tensor's integer dtype with its (per-tensor) scale and zero point."""
    dtype = detail["dtype"]
    scale, zero = _qparams(detail)
    if scale is None or not np.issubdtype(dtype, np.integer) or np.issubdtype(np.asarray(x).dtype, np.integer):
        return np.asarray(x).astype(dtype, copy=False)
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float64) / scale) + zero
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """Integer tensor with a scale -> float32; other tensors unchanged (float16 -> float32)."""
    scale, zero = _qparams(detail)
    if scale is not None and np.issubdtype(x.dtype, np.integer):
        return ((x.astype(np.float32) - np.float32(zero)) * np.float32(scale)).astype(np.float32)
    return x.astype(np.float32) if x.dtype == np.float16 else x


def _qparams(detail: dict) -> tuple[float | None, float]:
    qp = detail.get("quantization_parameters") or {}
    scales = np.asarray(qp.get("scales", []))
    if scales.size == 0:
        scale, zero = detail.get("quantization", (0.0, 0))
        return (float(scale), float(zero)) if scale else (None, 0.0)
    if scales.size > 1:
        raise ValueError(f"per-channel quantized model input/output {detail.get('name')!r} is not supported")
    return float(scales[0]), float(np.asarray(qp.get("zero_points", [0])).reshape(-1)[0])


class LiteRTModel:
    """One LiteRT model (one signature). `run` is serialized by a lock (interpreters are not thread-safe)."""

    def __init__(self, path: str | Path, num_threads: int = 2, signature: str | None = None) -> None:
        try:
            self._interp = Interpreter(model_path=str(path), num_threads=num_threads)
        except Exception as exc:  # the interpreter raises ValueError/RuntimeError variants
            raise ValueError(f"cannot load LiteRT model {path}: {str(exc).splitlines()[0]}") from None
        self._lock = threading.Lock()
        sigs = self._interp.get_signature_list()
        if signature is None and len(sigs) == 1:
            signature = next(iter(sigs))
        if signature is not None:
            if signature not in sigs:
                raise ValueError(f"LiteRT model {path} has no signature {signature!r}; it has {sorted(sigs)}")
            self._runner = self._interp.get_signature_runner(signature)
            self._in = dict(self._runner.get_input_details())
            self._out = dict(self._runner.get_output_details())
            self.input_names = list(sigs[signature]["inputs"])
            self.output_names = list(sigs[signature]["outputs"])
        else:
            self._runner = None
            self._interp.allocate_tensors()
            self._in = {d["name"]: d for d in self._interp.get_input_details()}
            self._out = {d["name"]: d for d in self._interp.get_output_details()}
            self.input_names = list(self._in)
            self.output_names = list(self._out)
        self.input_shapes = {k: tuple(int(v) if v >= 0 else None for v in d.get("shape_signature", d["shape"]))
                             for k, d in self._in.items()}

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once: quantize inputs as the model expects, dequantize outputs."""
        check_inputs(self, inputs)
        feed = {k: np.ascontiguousarray(quantize(v, self._in[k])) for k, v in inputs.items()}
        with self._lock:
            if self._runner is not None:
                raw = self._runner(**feed)
            else:
                for k, v in feed.items():
                    self._interp.set_tensor(self._in[k]["index"], v)
                self._interp.invoke()
                raw = {k: self._interp.get_tensor(d["index"]) for k, d in self._out.items()}
        return {k: dequantize(np.asarray(raw[k]), self._out[k]) for k in self.output_names}


def open_litert(path: str | Path, num_threads: int = 2, signature: str | None = None) -> LiteRTModel:
    """Open one .tflite file at `signature` (None: its only signature, or the plain interpreter)."""
    return LiteRTModel(path, num_threads=num_threads, signature=signature)
