"""Small helpers for the passes that rewrite finished .tflite files through the flatbuffer object API."""

from __future__ import annotations

from pathlib import Path


def tensor_name(t) -> str:  # noqa: ANN001 - a flatbuffer TensorT
    """A flatbuffer tensor's name as text (the object API keeps it as bytes)."""
    return t.name.decode() if isinstance(t.name, bytes) else t.name


def builtin_code(fm, op) -> int:  # noqa: ANN001 - a flatbuffer ModelT and OperatorT
    """The builtin operator code of `op` (codes above 127 live only in `builtinCode`)."""
    oc = fm.operatorCodes[op.opcodeIndex]
    return max(oc.builtinCode, oc.deprecatedBuiltinCode)


def op_readers(sg) -> dict[int, list[int]]:  # noqa: ANN001 - a flatbuffer SubGraphT
    """Tensor index -> indices of the operators of `sg` that read it (optional inputs, -1, skipped)."""
    readers: dict[int, list[int]] = {}
    for i, op in enumerate(sg.operators):
        for t in op.inputs:
            if t >= 0:
                readers.setdefault(int(t), []).append(i)
    return readers


def opcode_index(fm, builtin: int) -> int:  # noqa: ANN001
    """Index of `builtin` in the model's operator codes (added if missing)."""
    from ai_edge_litert import schema_py_generated as schema

    for i, oc in enumerate(fm.operatorCodes):
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == builtin:
            return i
    fm.operatorCodes.append(schema.OperatorCodeT(deprecatedBuiltinCode=min(builtin, 127), builtinCode=builtin,
                                                 version=1))
    return len(fm.operatorCodes) - 1


def write_in_place(fm, path: Path) -> None:  # noqa: ANN001
    """Write model `fm` over `path` through a temporary file beside it (never a half-written file)."""
    from ai_edge_litert.tools import flatbuffer_utils as fb

    tmp = path.with_name(path.name + ".rewrite")
    fb.write_model(fm, str(tmp))
    tmp.replace(path)
