"""ONNX Runtime backend (CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from .base import check_inputs

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


# Models with more weights than this run without ONNX Runtime's CPU memory arena: measured on SAM
# ViT-B at 1024, the arena grew an encoder session to 7.25 GB, 3.9 GB without it, at the same speed.
ARENA_MAX_MODEL_BYTES = 256 * 2**20


def model_bytes(path: Path) -> int:
    """Size of an ONNX file plus its external-data file (`<name>.data`), if any."""
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.is_file() else 0)


class OnnxModel:
    """One ONNX model in an `onnxruntime.InferenceSession` (thread-safe `run`)."""

    def __init__(self, path: str | Path, num_threads: int = 2) -> None:
        path = Path(path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = num_threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # idle intra-op threads sleep instead of spinning: on a shared or small CPU, spinning threads
        # steal the cores the next numpy step (mask upsampling) needs
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.memory_arena = path.is_file() and model_bytes(path) <= ARENA_MAX_MODEL_BYTES
        opts.enable_cpu_mem_arena = self.memory_arena
        try:
            self._sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f"cannot load ONNX model {path}: {str(exc).splitlines()[0]}") from None
        self._in_dtypes = {i.name: _ORT_DTYPES.get(i.type, np.float32) for i in self._sess.get_inputs()}
        self.input_names = [i.name for i in self._sess.get_inputs()]
        self.output_names = [o.name for o in self._sess.get_outputs()]
        self.input_shapes = {i.name: tuple(d if isinstance(d, int) else None for d in i.shape)
                             for i in self._sess.get_inputs()}

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; inputs are cast to the dtypes the graph declares; float16 outputs come back as float32."""
        check_inputs(self, inputs)
        feed = {k: np.ascontiguousarray(np.asarray(v).astype(self._in_dtypes[k], copy=False)) for k, v in inputs.items()}
        outs = self._sess.run(None, feed)
        return {
            name: (o.astype(np.float32) if o.dtype == np.float16 else o) for name, o in zip(self.output_names, outs)
        }


def open_onnx(path: str | Path, num_threads: int = 2, signature: str | None = None) -> OnnxModel:  # noqa: ARG001
    """Open one ONNX file (ONNX files have one entry point: `signature` is not used)."""
    return OnnxModel(path, num_threads=num_threads)
