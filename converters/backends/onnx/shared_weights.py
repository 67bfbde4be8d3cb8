"""One copy of weights for several ONNX graphs: shared external data.

The fixed-K decoders and the SAM-signature decoder hold the same weights. `share_weights` moves
every large initializer of the given graphs into one external-data file, writing each distinct
tensor (by content) once; every graph then points at the same offset and length. ONNX Runtime
resolves the file relative to each graph, so the graphs load as before.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

SHARED_WEIGHTS = "decoder.weights"
MIN_EXTERNAL_BYTES = 1024  # smaller tensors stay inside their graph
ALIGN = 64  # byte alignment of every tensor in the shared file


def _externalize(tensor, location: str, offset: int, length: int) -> None:
    from onnx import TensorProto
    from onnx.external_data_helper import set_external_data

    set_external_data(tensor, location=location, offset=offset, length=length)
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("raw_data")


def _large_initializers(model) -> list:
    """Initializers (graph and subgraphs) with at least MIN_EXTERNAL_BYTES of raw data."""
    from onnx import TensorProto

    out = []
    graphs = [model.graph]
    while graphs:
        g = graphs.pop()
        out += [t for t in g.initializer
                if t.data_location != TensorProto.EXTERNAL and len(t.raw_data) >= MIN_EXTERNAL_BYTES]
        for attr in (a for node in g.node for a in node.attribute):
            if attr.HasField("g"):
                graphs.append(attr.g)
            graphs.extend(attr.graphs)
    return out


def share_weights(out_dir: Path, files: list[str], data_file: str = SHARED_WEIGHTS) -> dict:
    """Rewrite the ONNX `files` in `out_dir` so their large initializers live once in `data_file`.

    Returns the manifest record of the choice: {"file", "shared_by", "format", "tensors", "bytes"}.
    """
    import onnx

    out_dir = Path(out_dir)
    models = {name: onnx.load(str(out_dir / name)) for name in files}
    offsets: dict[str, tuple[int, int]] = {}  # content sha256 -> (offset, length)
    with open(out_dir / data_file, "wb") as blob:
        for model in models.values():
            for t in _large_initializers(model):
                raw = t.raw_data
                key = hashlib.sha256(raw).hexdigest()
                if key not in offsets:
                    pos = blob.tell()
                    pad = (-pos) % ALIGN
                    blob.write(b"\0" * pad)
                    offsets[key] = (pos + pad, len(raw))
                    blob.write(raw)
                _externalize(t, data_file, *offsets[key])
        size = blob.tell()
    for name, model in models.items():
        onnx.save(model, str(out_dir / name))
    return {"file": data_file, "shared_by": list(files), "format": "onnx_external_data",
            "tensors": len(offsets), "bytes": size,
            "note": "every decoder graph reads its weights from this one file (same offsets)"}
