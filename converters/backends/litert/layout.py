"""Fewer copies in LiteRT graphs: TRANSPOSE/RESHAPE chains that only reshape become one RESHAPE.

The converter writes every PyTorch NCHW convolution as NHWC with a TRANSPOSE on each side. TinyViT
keeps tokens as [B, H*W, C] and turns them into [B, C, H, W] for its depthwise and patch-merging
convolutions (`transpose(1, 2).reshape(...)`), so around each such convolution the graph holds
TRANSPOSE -> RESHAPE -> TRANSPOSE runs that, put together, leave every element where it was. Each
TRANSPOSE is a real copy of a multi-megabyte activation at run time.

This pass rewrites the finished file: in each run of TRANSPOSE/RESHAPE ops (each feeding only the
next), the longest stretches whose composition is a pure reshape (checked exactly, by applying the
ops to an index array) are replaced by one RESHAPE. Values are unchanged, bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from converters.backends.litert.flatbuffer import builtin_code, op_readers, opcode_index, write_in_place


def _const_ints(fm, sg, ti: int) -> np.ndarray | None:  # noqa: ANN001
    from ai_edge_litert import schema_py_generated as schema

    t = sg.tensors[ti]
    buf = fm.buffers[t.buffer]
    if buf.data is None or len(buf.data) == 0:
        return None
    dtype = {schema.TensorType.INT32: np.int32, schema.TensorType.INT64: np.int64}.get(t.type)
    return None if dtype is None else np.frombuffer(bytes(buf.data), dtype)


def _is_pure_reshape(fm, sg, chain: list) -> bool:  # noqa: ANN001
    """True if applying the ops of `chain` in order moves no element (row-major order kept)."""
    from ai_edge_litert import schema_py_generated as schema

    shape = list(sg.tensors[chain[0].inputs[0]].shape)
    a = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    for op in chain:
        if builtin_code(fm, op) == schema.BuiltinOperator.TRANSPOSE:
            perm = _const_ints(fm, sg, op.inputs[1])
            if perm is None:
                return False
            a = a.transpose(perm.tolist())
        a = a.reshape(list(sg.tensors[op.outputs[0]].shape))
    return bool(np.array_equal(a.ravel(), np.arange(a.size)))


def _chains(fm, sg) -> list[list[int]]:  # noqa: ANN001
    """Runs of TRANSPOSE/RESHAPE operator indices, each op's output read only by the next op."""
    from ai_edge_litert import schema_py_generated as schema

    kinds = (schema.BuiltinOperator.TRANSPOSE, schema.BuiltinOperator.RESHAPE)
    readers = op_readers(sg)
    outputs = {int(t) for t in sg.outputs}
    movable = [builtin_code(fm, op) in kinds and all(sg.tensors[t].shape is not None for t in op.outputs)
               for op in sg.operators]

    def next_of(i: int) -> int | None:
        out = int(sg.operators[i].outputs[0])
        r = readers.get(out, [])
        return r[0] if len(r) == 1 and out not in outputs and movable[r[0]] and \
            int(sg.operators[r[0]].inputs[0]) == out else None

    has_prev = {n for i in range(len(sg.operators)) if movable[i] and (n := next_of(i)) is not None}
    chains = []
    for i in range(len(sg.operators)):
        if movable[i] and i not in has_prev:
            chain = [i]
            while (n := next_of(chain[-1])) is not None:
                chain.append(n)
            chains.append(chain)
    return chains


def _drop_unused_tensors(fm, si: int) -> None:  # noqa: ANN001
    """Remove the tensors of subgraph `si` that nothing reads or writes any more; renumber the rest.

    Tools that walk every tensor (litert-quantizer's calibrator) fail on orphans without data."""
    sg = fm.subgraphs[si]
    used = {int(t) for op in sg.operators for t in list(op.inputs) + list(op.outputs) if int(t) >= 0}
    used |= {int(t) for t in list(sg.inputs) + list(sg.outputs)}
    keep = sorted(used)
    new = {old: i for i, old in enumerate(keep)}
    sg.tensors = [sg.tensors[i] for i in keep]
    for op in sg.operators:
        op.inputs = [new[int(t)] if int(t) >= 0 else -1 for t in op.inputs]
        op.outputs = [new[int(t)] for t in op.outputs]
    sg.inputs = [new[int(t)] for t in sg.inputs]
    sg.outputs = [new[int(t)] for t in sg.outputs]
    for sig in fm.signatureDefs or []:
        if sig.subgraphIndex == si:
            for tm in list(sig.inputs or []) + list(sig.outputs or []):
                tm.tensorIndex = new[int(tm.tensorIndex)]


def collapse_layout_chains(path: Path) -> dict[str, int]:
    """Rewrite `path` in place (see the module docstring); returns {"transposes_removed", "ops_removed"}."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fb

    fm = fb.read_model(str(path))
    transposes = removed = 0
    for si, sg in enumerate(fm.subgraphs):
        replace: dict[int, object] = {}  # first op index of a stretch -> its RESHAPE
        drop: set[int] = set()
        for chain in _chains(fm, sg):
            i = 0
            while i < len(chain):
                for j in range(len(chain), i + 1, -1):  # longest stretch first
                    ops = [sg.operators[k] for k in chain[i:j]]
                    n_t = sum(builtin_code(fm, op) == schema.BuiltinOperator.TRANSPOSE for op in ops)
                    if n_t and _is_pure_reshape(fm, sg, ops):
                        out = int(ops[-1].outputs[0])
                        shape = np.asarray(sg.tensors[out].shape, np.int32)
                        fm.buffers.append(schema.BufferT(data=shape.view(np.uint8)))
                        sg.tensors.append(schema.TensorT(shape=[len(shape)], type=schema.TensorType.INT32,
                                                         buffer=len(fm.buffers) - 1,
                                                         name=f"collapsed_shape_{len(sg.tensors)}"))
                        replace[chain[i]] = schema.OperatorT(
                            opcodeIndex=opcode_index(fm, schema.BuiltinOperator.RESHAPE),
                            inputs=[int(ops[0].inputs[0]), len(sg.tensors) - 1], outputs=[out],
                            builtinOptionsType=schema.BuiltinOptions.ReshapeOptions,
                            builtinOptions=schema.ReshapeOptionsT(newShape=shape.tolist()))
                        drop.update(chain[i:j])
                        transposes += n_t
                        removed += j - i - 1
                        i = j
                        break
                else:
                    i += 1
        if replace:
            sg.operators = [replace.get(k, op) for k, op in enumerate(sg.operators)
                            if k in replace or k not in drop]
            _drop_unused_tensors(fm, si)
    if transposes:
        write_in_place(fm, path)
    return {"transposes_removed": transposes, "ops_removed": removed}
