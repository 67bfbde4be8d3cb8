"""ONNX files past protobuf's 2 GB limit (SAM ViT-H fp32): weights in one external-data file beside the graph.

A graph whose initializers exceed `EXTERNAL_DATA_BYTES` is saved as `<name>.onnx` + `<name>.onnx.data`
(ONNX external data, one file, every tensor of 1 KB or more). ONNX Runtime finds the data file next
to the graph, and the package hashes it like every other file.
"""

from __future__ import annotations

import os
from pathlib import Path

EXTERNAL_DATA_BYTES = 1_800_000_000  # below protobuf's 2 GiB serialization limit, with room for the graph


def initializer_bytes(model) -> int:  # noqa: ANN001 - onnx.ModelProto
    """Bytes of the main graph's initializers (raw or typed data, external data by its recorded length)."""
    from onnx import external_data_helper, numpy_helper

    total = 0
    for t in model.graph.initializer:
        if external_data_helper.uses_external_data(t):
            total += int({e.key: e.value for e in t.external_data}.get("length", 0))
        else:
            total += numpy_helper.to_array(t).nbytes if not t.raw_data else len(t.raw_data)
    return total


def needs_external_data(model) -> bool:  # noqa: ANN001
    """Whether `model` must be saved with external data (it is too large, or already refers to some)."""
    from onnx import external_data_helper

    return (any(external_data_helper.uses_external_data(t) for t in model.graph.initializer)
            or initializer_bytes(model) > EXTERNAL_DATA_BYTES)


def save_onnx(model, path: Path) -> list[Path]:  # noqa: ANN001
    """Save `model` at `path`, with its weights in `<path>.data` when it is too large for one file.

    Returns the files written. A stale data file from an earlier save is removed.
    """
    import onnx

    path = Path(path)
    data = path.with_name(path.name + ".data")
    data.unlink(missing_ok=True)
    if not needs_external_data(model):
        onnx.save(model, str(path))
        return [path]
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name,
              size_threshold=1024)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(data, 0o666 & ~umask)  # onnx creates the data file owner-only; the package's files are alike
    return [path, data]


def copy_onnx(src: Path, dst: Path) -> list[Path]:
    """Copy an ONNX model (with whatever external data it references) to `dst` in `save_onnx` form."""
    import onnx

    return save_onnx(onnx.load(str(src)), dst)
