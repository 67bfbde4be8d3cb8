"""Data movement on int8: in a static int8 LiteRT graph, QUANTIZE moves up and DEQUANTIZE moves down
past the TRANSPOSE / RESHAPE / SLICE / STRIDED_SLICE / PAD ops next to them.

litert-quantizer puts a QUANTIZE right before each int8 layer and a DEQUANTIZE right after it, so the
window partitions, head splits and paddings around TinyViT's layers move float32 data: four bytes an
element where one would do. Quantizing is elementwise and these ops only move elements, so either
order gives the same bytes; a zero pad stays exact when the zero point is 0 (the only case taken).
It also puts the explicit PAD of a stride-2 convolution right before the int8 CONV_2D, where XNNPACK
folds it into the convolution's own padding (no padded copy at all); with a QUANTIZE in between it
cannot. On the 1024 px TinySAM w8a8 encoder: 124 moves, 239 -> 196 ms at 2 threads, outputs bit
for bit the same.

Only per-tensor quantization is moved (a per-channel axis would have to follow the transposes).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from converters.backends.litert.flatbuffer import builtin_code, op_readers, write_in_place


def _moves() -> set[int]:
    from ai_edge_litert import schema_py_generated as schema

    b = schema.BuiltinOperator
    return {b.TRANSPOSE, b.RESHAPE, b.SLICE, b.STRIDED_SLICE, b.PAD}


def _per_tensor(q, zero_point_zero: bool) -> bool:  # noqa: ANN001 - a flatbuffer QuantizationParametersT
    if q is None or q.scale is None or len(q.scale) != 1:
        return False
    return not zero_point_zero or q.zeroPoint is None or all(int(z) == 0 for z in q.zeroPoint)


def _retype(sg, t: int, like: int, shape_of: int) -> None:  # noqa: ANN001
    """Tensor `t` becomes the quantized type and parameters of `like` with the shape of `shape_of`."""
    dst, src = sg.tensors[t], sg.tensors[like]
    dst.type = src.type
    dst.quantization = copy.deepcopy(src.quantization)
    dst.shape = np.array(sg.tensors[shape_of].shape, np.int32)
    dst.shapeSignature = None


def _one_move(fm, sg, moves: set[int]) -> bool:  # noqa: ANN001
    """Apply the first possible move in `sg`; False when there is none."""
    from ai_edge_litert import schema_py_generated as schema

    readers = op_readers(sg)
    producer = {int(t): i for i, op in enumerate(sg.operators) for t in op.outputs}
    graph_out = {int(t) for t in sg.outputs}

    def ready_before(op, i: int) -> bool:  # noqa: ANN001 - every extra input of `op` exists before index i
        return all(t < 0 or producer.get(int(t), -1) < i for t in op.inputs[1:])

    for i, op in enumerate(sg.operators):
        code = builtin_code(fm, op)
        if code == schema.BuiltinOperator.DEQUANTIZE:  # q -> DEQUANTIZE -> f -> MOVE -> g
            q, f = int(op.inputs[0]), int(op.outputs[0])
            r = readers.get(f, [])
            if f in graph_out or len(r) != 1:
                continue
            j, m = r[0], sg.operators[r[0]]
            mc = builtin_code(fm, m)
            if (mc not in moves or int(m.inputs[0]) != f or not ready_before(m, i)
                    or not _per_tensor(sg.tensors[q].quantization, mc == schema.BuiltinOperator.PAD)):
                continue
            g = int(m.outputs[0])
            _retype(sg, f, q, g)  # q -> MOVE -> f (int8) -> DEQUANTIZE -> g
            m.inputs = np.array([q, *[int(t) for t in m.inputs[1:]]], np.int32)
            m.outputs = np.array([f], np.int32)
            op.inputs, op.outputs = np.array([f], np.int32), np.array([g], np.int32)
            sg.operators[i], sg.operators[j] = m, op
            return True
        if code == schema.BuiltinOperator.QUANTIZE:  # e -> MOVE -> f -> QUANTIZE -> q
            f, q = int(op.inputs[0]), int(op.outputs[0])
            if f not in producer or f in graph_out or len(readers.get(f, [])) != 1:
                continue
            j, m = producer[f], sg.operators[producer[f]]
            mc = builtin_code(fm, m)
            if mc not in moves or not _per_tensor(sg.tensors[q].quantization, mc == schema.BuiltinOperator.PAD):
                continue
            e = int(m.inputs[0])
            _retype(sg, f, q, e)  # e -> QUANTIZE -> f (int8) -> MOVE -> q
            op.inputs, op.outputs = np.array([e], np.int32), np.array([f], np.int32)
            m.inputs = np.array([f, *[int(t) for t in m.inputs[1:]]], np.int32)
            m.outputs = np.array([q], np.int32)
            sg.operators[i], sg.operators[j] = m, op
            return True
    return False


def move_int8_data(path: Path) -> int:
    """Rewrite `path` in place (see the module docstring); returns the number of moves made."""
    from ai_edge_litert.tools import flatbuffer_utils as fb

    fm = fb.read_model(str(path))
    moves = _moves()
    n = 0
    for sg in fm.subgraphs:
        while _one_move(fm, sg, moves):
            n += 1
    if n:
        write_in_place(fm, Path(path))
    return n
