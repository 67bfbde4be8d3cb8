"""Paths written inside model files must stay inside the package, like the manifest's own paths.

A model file can name other files: a CoreML `.mlpackage` its spec (`Manifest.json` item paths) and its
weight blobs (`@model_path/...` in the ML program), an ONNX graph its external-data files. Each such
path is resolved the way the runtime resolves it and refused (`PackageError`) when it is absolute,
leaves the package, or (CoreML weights) does not start with `@model_path/`. LiteRT flatbuffers name
no files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .manifest import PackageError, safe_member_path

MODEL_PATH = "@model_path/"


def _inside(root: Path, base: Path, name: str, what: str) -> Path:
    """`base / name` resolved, which must lie inside `root` (`name` relative, no escape)."""
    if not isinstance(name, str) or not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise PackageError(f"{what} {name!r} is not a relative path inside the package")
    try:
        rel = base.resolve().relative_to(root.resolve()) if base.resolve() != root.resolve() else Path()
    except ValueError:
        raise PackageError(f"{what} {name!r} leaves the package") from None
    try:
        return safe_member_path(root, (rel / name).as_posix())
    except PackageError:
        raise PackageError(f"{what} {name!r} leaves the package") from None


def _blob_names(message: Any, out: set[str]) -> None:
    """Every `blobFileValue.fileName` in an ML program protobuf message, recursively."""
    for field, value in message.ListFields():
        if field.name == "blobFileValue":
            out.add(value.fileName)
            continue
        if field.type != field.TYPE_MESSAGE:
            continue
        repeated = getattr(field, "is_repeated", None)
        if repeated is None:  # older protobuf
            repeated = field.label == field.LABEL_REPEATED
        if repeated:
            items = value.values() if hasattr(value, "values") and callable(value.values) else value
            for item in items:
                if hasattr(item, "ListFields"):
                    _blob_names(item, out)
        else:
            _blob_names(value, out)


def check_coreml_paths(root: Path, mlpackage: Path) -> None:
    """Refuse an `.mlpackage` whose spec or weight references lie outside `root`."""
    from .backends.coreml_emulator.proto import model_pb2

    manifest = mlpackage / "Manifest.json"
    spec_path = mlpackage / "Data" / "com.apple.CoreML" / "model.mlmodel"
    if manifest.is_file():
        try:
            info = json.loads(manifest.read_text())
            entries = info.get("itemInfoEntries", {})
        except (json.JSONDecodeError, AttributeError):
            raise PackageError(f"{mlpackage.name}/Manifest.json is not a valid mlpackage manifest") from None
        if not isinstance(entries, dict):
            raise PackageError(f"{mlpackage.name}/Manifest.json itemInfoEntries must be an object")
        for key, entry in entries.items():
            path = entry.get("path") if isinstance(entry, dict) else None
            target = _inside(root, mlpackage / "Data", path, f"{mlpackage.name} item path")
            if key == info.get("rootModelIdentifier"):
                spec_path = target
    if not spec_path.is_file():
        raise PackageError(f"{mlpackage.name} has no model spec at {spec_path.relative_to(root)}")
    model = model_pb2().Model()
    try:
        model.ParseFromString(spec_path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own DecodeError
        raise PackageError(f"{mlpackage.name}: the model spec cannot be parsed ({type(exc).__name__})") from None
    names: set[str] = set()
    _blob_names(model, names)
    for name in sorted(names):
        if not name.startswith(MODEL_PATH):
            raise PackageError(f"{mlpackage.name} weight reference {name!r} does not start with {MODEL_PATH}")
        _inside(root, spec_path.parent, name[len(MODEL_PATH):], f"{mlpackage.name} weight reference")


def _onnx_tensors(graph: Any) -> list[Any]:
    tensors = list(graph.initializer) + [s.values for s in graph.sparse_initializer]
    for node in graph.node:
        for attr in node.attribute:
            tensors += ([attr.t] if attr.HasField("t") else []) + list(attr.tensors)
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                tensors += _onnx_tensors(sub)
    return tensors


def check_onnx_paths(root: Path, model_file: Path) -> None:
    """Refuse an ONNX file whose external-data locations lie outside `root`."""
    import onnx

    try:
        model = onnx.load(str(model_file), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError and others
        raise PackageError(f"{model_file.name} is not a valid ONNX model ({type(exc).__name__})") from None
    for tensor in _onnx_tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location")
        target = _inside(root, model_file.parent, location, f"{model_file.name} external data")
        if not target.is_file():
            raise PackageError(f"{model_file.name} external data {location!r} is missing")


def _names_no_files(root: Path, path: Path) -> None:
    """Formats whose model files name no other files: LiteRT flatbuffers; ExecuTorch programs (external
    weight files are only read when the caller passes them, which the runtime never does); Core AI
    `.aimodel` directories (the hash tree already covers, and refuses links in, every file they hold)."""


# Runtime kind -> how the paths inside its model files are checked; every registered kind has an entry
# (tests/reliability/test_rel_integrity.py holds the two tables in step).
PATH_CHECKS = {"onnx": check_onnx_paths, "coreml": check_coreml_paths, "tflite": _names_no_files,
               "executorch": _names_no_files, "coreai": _names_no_files}


def check_model_paths(root: str | Path, name: str, kind: str) -> None:
    """Check the paths inside model file `name` (relative to package `root`) for runtime `kind`."""
    root = Path(root)
    path = safe_member_path(root, name)
    if kind not in PATH_CHECKS:
        raise PackageError(f"no path check for package target {kind!r}; known: {', '.join(PATH_CHECKS)}")
    if path.exists():
        PATH_CHECKS[kind](root, path)
