"""Smaller LiteRT encoders: TinyViT's attention biases looked up in the graph, not stored folded.

The LiteRT converter folds `attention_biases[:, attention_bias_idxs]` (a small [heads, offsets]
table and a constant index) into one float [1, heads, N, N] constant per block: 4.9 MB of float for
TinySAM at any precision, since the quantizer only touches weights of FC/conv ops. Gathering in the
exported module does not help: the converter folds any op whose inputs are all constant. So this
rewrites the finished file instead: each folded bias
constant becomes the output of a GATHER (axis 2) of its table by an int32 index, one index per
window size. GATHER of constants runs once per inference (0.1 ms); the values are the same floats.
(`converters.backends.onnx.compact` does the same for ONNX graphs.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from converters.adapters import table_lookups
from converters.backends.litert.flatbuffer import opcode_index, tensor_name, write_in_place


def _bias_lookups(model: torch.nn.Module) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(folded [heads, N, N], table [heads, offsets], index [N, N]) of every attention-bias lookup the
    model's export adapter names (TinyViT's `attention_biases[:, attention_bias_idxs]`)."""
    lookups = [lk for lk in table_lookups(model) if lk.kind == "attention_bias"]
    out = []
    for m in model.modules():
        for lk in lookups:
            table, idx = getattr(m, lk.table_attr, None), getattr(m, lk.index_attr, None)
            if isinstance(table, torch.Tensor) and isinstance(idx, torch.Tensor):
                with torch.no_grad():
                    t = table.detach().float().cpu().numpy()
                    i = idx.cpu().numpy().astype(np.int32)
                out.append((np.take(t, i, axis=lk.axis), t, i))
    return out


def compact_tflite_biases(path: Path, model: torch.nn.Module) -> dict[str, int]:
    """Rewrite `path` in place: folded attention-bias constants -> GATHER(table, index).

    Returns {"replaced": n, "bytes_saved": b}. A file without such constants is left untouched.
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fb

    lookups = _bias_lookups(model)
    if not lookups:
        return {"replaced": 0, "bytes_saved": 0}
    fm = fb.read_model(str(path))
    sg = fm.subgraphs[0]
    by_shape: dict[tuple, list] = {}
    for folded, table, idx in lookups:
        by_shape.setdefault((1, *folded.shape), []).append((folded, table, idx))

    def const(t) -> np.ndarray | None:  # noqa: ANN001
        buf = fm.buffers[t.buffer]
        if t.type != schema.TensorType.FLOAT32 or buf.data is None or len(buf.data) == 0:
            return None
        return np.frombuffer(bytes(buf.data), np.float32).reshape(t.shape)

    def add_tensor(arr: np.ndarray, ttype: int, name: str) -> int:
        fm.buffers.append(schema.BufferT(data=np.ascontiguousarray(arr).view(np.uint8).ravel()))
        sg.tensors.append(schema.TensorT(shape=list(arr.shape), type=ttype, buffer=len(fm.buffers) - 1,
                                         name=name))
        return len(sg.tensors) - 1

    gathers: list = []
    index_tensors: dict[bytes, int] = {}
    saved = 0
    for ti, t in enumerate(sg.tensors):
        cands = by_shape.get(tuple(t.shape)) if t.shape is not None else None
        arr = const(t) if cands else None
        if arr is None:
            continue
        hit = next((c for c in cands if np.array_equal(arr[0], c[0])), None)
        if hit is None:
            continue
        _, table, idx = hit
        key = idx.tobytes()
        if key not in index_tensors:
            index_tensors[key] = add_tensor(idx, schema.TensorType.INT32, f"attention_bias_index_{idx.shape[0]}")
        table_t = add_tensor(table[None].astype(np.float32), schema.TensorType.FLOAT32, f"{tensor_name(t)}_table")
        saved += arr.nbytes - table.nbytes
        fm.buffers[t.buffer] = schema.BufferT()  # the folded values are gone; the tensor is now computed
        gathers.append(schema.OperatorT(
            opcodeIndex=opcode_index(fm, schema.BuiltinOperator.GATHER), inputs=[table_t, index_tensors[key]],
            outputs=[ti], builtinOptionsType=schema.BuiltinOptions.GatherOptions,
            builtinOptions=schema.GatherOptionsT(axis=2, batchDims=0)))
    if not gathers:
        return {"replaced": 0, "bytes_saved": 0}
    saved -= sum(int(np.prod(sg.tensors[i].shape)) * 4 for i in index_tensors.values())
    sg.operators = gathers + list(sg.operators)  # inputs are constants: they can run first
    write_in_place(fm, path)
    return {"replaced": len(gathers), "bytes_saved": int(saved)}

