"""Undo constant folding that bloats ONNX files: store small sources, compute the big tensor in-graph.

`torch.onnx.export(do_constant_folding=True)` stores some large tensors that the model computes from
small parameters, and the int8 weight quantizer (MatMul/Gemm/Conv only) leaves them float:
- TinyViT attention biases: `attention_biases[:, attention_bias_idxs]` ([heads, N, N] per block,
  4.9 MB float for TinySAM) -> `Gather(attention_biases, idxs, axis=1)` (table [heads, offsets],
  int32 index shared by the blocks of one window size);
- SAM ViT relative-position lookups `rel_pos_h[rel_index_h]`, `rel_pos_w[rel_index_w]` ([q, k, C] per
  block and axis; the int8 pre-processing folds them: 8.9 MB float for ViT-B at 1024, where the
  tables are 0.2 MB) -> `Gather(rel_pos, rel_index, axis=0)`;
- the decoder's dense positional encoding ([1, 256, E, E], 4.2 MB at 1024) -> the random Fourier
  features computed from the grid and the 2 x 128 Gaussian matrix (MatMul, Sin, Cos).

Folded tensors are recognised by value (every const equal to the reference's tensor in one of the
layouts the exporter produces), so a model without such parts is left unchanged. The replacement
computes the same values (the gather is exact; the Fourier features agree to float rounding).
Runs on the final-precision file: an fp16 const gets fp16 sources (gather) or an fp32 computation
cast to fp16 (positional encoding, whose sine arguments need fp32).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from converters.adapters import folds_dense_positional_encoding, table_lookups
from converters.backends.onnx.large import save_onnx

MIN_BYTES = 16 * 1024  # smaller folded consts are not worth a subgraph


@dataclass
class Folded:
    """A tensor the exporter may have folded, and how to rebuild it from small sources."""

    kind: str
    value: np.ndarray  # float32, canonical layout
    layouts: list[tuple[np.ndarray, str]]  # (value in that layout, "same" | "transpose2d")
    build: Callable  # (graph_builder, dtype, out_name) -> None; produces the canonical layout 2-D form


class _Graph:
    """Adds initializers and nodes to one ONNX graph with unique names."""

    def __init__(self, graph) -> None:
        self.graph = graph
        self.names = {t.name for t in graph.initializer} | {o for n in graph.node for o in n.output}
        self.by_content: dict[str, str] = {}
        self.new_nodes: list = []

    def unique(self, base: str) -> str:
        name, i = base, 0
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def init(self, base: str, arr: np.ndarray) -> str:
        """An initializer holding `arr`, shared with an earlier identical one."""
        from onnx import numpy_helper

        key = hashlib.sha256(arr.tobytes() + str((arr.dtype, arr.shape)).encode()).hexdigest()
        if key not in self.by_content:
            name = self.unique(base)
            self.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
            self.by_content[key] = name
        return self.by_content[key]

    def node(self, op: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        from onnx import helper

        out = out or self.unique(f"compact/{op}")
        self.new_nodes.append(helper.make_node(op, inputs, [out], name=self.unique(f"compact/{op}_node"), **attrs))
        return out


def _table_lookups(model: torch.nn.Module, kind: str, table_attr: str, index_attr: str, axis: int) -> list[Folded]:
    """`table[index]` along `axis` for every module holding both tensors (`table_attr`, `index_attr`)."""
    out = []
    for name, mod in model.named_modules():
        table, idx = getattr(mod, table_attr, None), getattr(mod, index_attr, None)
        if not isinstance(table, torch.Tensor) or not isinstance(idx, torch.Tensor):
            continue
        t = table.detach().float().numpy()
        i = idx.numpy().astype(np.int32)
        value = np.take(t, i, axis=axis)

        def build(g: _Graph, dtype, out_name: str, t=t, i=i, name=name) -> None:
            data = g.init(f"{name}.{table_attr}", t.astype(dtype))
            g.node("Gather", [data, g.init(index_attr, i)], out_name, axis=axis)

        out.append(Folded(kind, value, [(value, "same")], build))
    return out


def _dense_pe(model: torch.nn.Module) -> list[Folded]:
    pe_layer = getattr(getattr(model, "prompt_encoder", None), "pe_layer", None)
    gauss = getattr(pe_layer, "positional_encoding_gaussian_matrix", None)
    if gauss is None or not hasattr(model.prompt_encoder, "get_dense_pe"):
        return []
    with torch.no_grad():
        dense = model.prompt_encoder.get_dense_pe()[0].float().numpy()  # [C, h, w]
    c, h, w = dense.shape
    y = (np.arange(h, dtype=np.float32) + 0.5) / np.float32(h)
    x = (np.arange(w, dtype=np.float32) + 0.5) / np.float32(w)
    grid = np.stack([np.broadcast_to(x[None, :], (h, w)), np.broadcast_to(y[:, None], (h, w))], -1)
    grid = (2.0 * grid - 1.0).reshape(h * w, 2).astype(np.float32)
    g_mat = gauss.detach().float().numpy()
    flat = dense.reshape(c, h * w)  # [C, HW]

    def build(g: _Graph, dtype, out_name: str) -> None:
        proj = g.node("MatMul", [g.init("dense_pe.grid", grid), g.init("dense_pe.gaussian", g_mat)])
        proj = g.node("Mul", [proj, g.init("dense_pe.two_pi", np.array(2.0 * math.pi, np.float32))])
        feats = g.node("Concat", [g.node("Sin", [proj]), g.node("Cos", [proj])], axis=-1)  # [HW, C]
        if dtype == np.float32:
            g.node("Identity", [feats], out_name)
        else:
            g.node("Cast", [feats], out_name, to=10)  # float16

    return [Folded("dense_pe", flat, [(flat, "transpose2d"), (flat.T, "same")], build)]


def folded_candidates(model: torch.nn.Module) -> list[Folded]:
    """Every tensor of `model` the exporter may fold into a large constant: the table lookups its export
    adapter names (TinyViT attention biases, SAM ViT relative positions) and the dense positional encoding."""
    found = [f for lk in table_lookups(model) for f in _table_lookups(model, lk.kind, lk.table_attr, lk.index_attr,
                                                                      lk.axis)]
    found += _dense_pe(model) if folds_dense_positional_encoding(model) else []
    return [f for f in found if f.value.nbytes >= MIN_BYTES]


def _consts(graph) -> list[tuple[str, np.ndarray, object]]:
    """(name, value, owner) of every float initializer / Constant node output of `graph`."""
    from onnx import numpy_helper

    out = []
    for t in graph.initializer:
        if t.data_type in (1, 10):  # float, float16
            out.append((t.name, numpy_helper.to_array(t), t))
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            arr = numpy_helper.to_array(n.attribute[0].t)
            if arr.dtype in (np.float32, np.float16):
                out.append((n.output[0], arr, n))
    return [c for c in out if c[1].nbytes >= MIN_BYTES // 2]


def _match(arr: np.ndarray, cand: Folded) -> str | None:
    for value, how in cand.layouts:
        if value.size == arr.size:
            ref = value.reshape(arr.shape).astype(arr.dtype)
            tol = 1e-3 if arr.dtype == np.float16 else 1e-5
            if np.allclose(arr.astype(np.float32), ref.astype(np.float32), rtol=tol, atol=tol * 1e-1):
                return how
    return None


def _topological(nodes: list) -> list:
    """Nodes ordered so every input is produced before use (names no node produces are available)."""
    producer = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    deps = [{producer[x] for x in n.input if x in producer} for n in nodes]
    users: dict[int, list[int]] = {}
    for i, d in enumerate(deps):
        for j in d:
            users.setdefault(j, []).append(i)
    waiting = [len(d) for d in deps]
    ready = [i for i, w in enumerate(waiting) if w == 0]
    order: list[int] = []
    while ready:
        i = ready.pop(0)
        order.append(i)
        for u in users.get(i, []):
            waiting[u] -= 1
            if waiting[u] == 0:
                ready.append(u)
    if len(order) != len(nodes):
        raise ValueError("ONNX graph has a cycle")
    return [nodes[i] for i in order]


def compact_file(path: Path, model: torch.nn.Module) -> dict[str, int]:
    """Rewrite the ONNX file at `path` so folded tensors of `model` are computed in-graph.

    Returns {kind: count} of the replaced consts (empty: file unchanged).
    """
    import onnx

    cands = folded_candidates(model)
    if not cands:
        return {}
    m = onnx.load(str(path))
    g = _Graph(m.graph)
    replaced: dict[str, int] = {}
    drop_inits, drop_nodes = set(), set()
    for name, arr, owner in _consts(m.graph):
        for cand in cands:
            how = _match(arr, cand)
            if how is None:
                continue
            flat = g.unique(f"{name}/compact")
            cand.build(g, arr.dtype.type, flat)
            src = g.node("Transpose", [flat], perm=[1, 0]) if how == "transpose2d" else flat
            shape = g.init("compact_shape", np.array(arr.shape, np.int64))
            g.node("Reshape", [src, shape], name)
            (drop_inits if isinstance(owner, onnx.TensorProto) else drop_nodes).add(name)
            replaced[cand.kind] = replaced.get(cand.kind, 0) + 1
            break
    if not replaced:
        return {}
    keep = [t for t in m.graph.initializer if t.name not in drop_inits]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
    nodes = g.new_nodes + [n for n in m.graph.node if not (n.op_type == "Constant" and n.output[0] in drop_nodes)]
    del m.graph.node[:]
    m.graph.node.extend(_topological(nodes))
    save_onnx(m, path)
    onnx.checker.check_model(str(path))  # by path: the checker reads external data of large models from disk
    return replaced
