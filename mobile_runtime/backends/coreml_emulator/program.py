"""Read an ``.mlpackage``: the model spec, the ML program and its weight blobs.

Weight file format (MIL blob storage v2): a 64-byte header, then for each blob a 64-byte
metadata record at the offset a ``BlobFileValue`` names: ``uint32 sentinel (0xDEADBEEF),
uint32 dtype, uint64 size_in_bytes, uint64 data_offset, ...``; the raw little-endian data lives
at ``data_offset``. Sub-byte types (int4, uint1..uint6) are packed starting at the least
significant bit.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CoreMLEmulatorError
from .proto import model_pb2

# MILSpec.DataType -> (numpy dtype, bits per element when stored packed).
MIL_DTYPES: dict[int, tuple[Any, int]] = {
    1: (np.bool_, 8), 2: (np.str_, 0), 10: (np.float16, 16), 11: (np.float32, 32),
    12: (np.float64, 64), 21: (np.int8, 8), 22: (np.int16, 16), 23: (np.int32, 32),
    24: (np.int64, 64), 25: (np.int8, 4), 31: (np.uint8, 8), 32: (np.uint16, 16),
    33: (np.uint32, 32), 34: (np.uint64, 64), 35: (np.uint8, 4), 36: (np.uint8, 2),
    37: (np.uint8, 1), 38: (np.uint8, 6), 39: (np.uint8, 3),
}
_SIGNED_SUBBYTE = {25}
_BLOB_SENTINEL = 0xDEADBEEF

# Model.proto ArrayFeatureType.ArrayDataType -> numpy dtype.
FEATURE_DTYPES: dict[int, Any] = {65552: np.float16, 65568: np.float32, 65600: np.float64,
                                  131104: np.int32}


@dataclass(frozen=True)
class TensorSpec:
    """Declared type of a program variable: numpy dtype and shape (``None`` for unknown dims)."""

    dtype: Any
    shape: tuple[int | None, ...] | None
    mil_dtype: int = 0


@dataclass
class LoadedSpec:
    """A parsed package: the Model spec, the selected program function and where weights live.

    ``description`` holds the selected function's feature descriptions (``.input``, ``.output``):
    the model's own description for a single-function model, its ``FunctionDescription`` for a
    multifunction one.
    """

    model: Any
    function: Any
    block: Any
    weights_dir: Path
    function_name: str = "main"
    description: Any = None
    blobs: dict[str, bytes] = field(default_factory=dict)


def find_model_spec(path: Path) -> tuple[Path, Path]:
    """Return ``(model.mlmodel path, directory that "@model_path" stands for)`` of a package."""
    path = Path(path)
    if not path.exists():
        raise CoreMLEmulatorError(f"no such .mlpackage: {path}")
    if path.is_file():
        return path, path.parent
    manifest = path / "Manifest.json"
    if manifest.is_file():
        info = json.loads(manifest.read_text())
        entry = info.get("itemInfoEntries", {}).get(info.get("rootModelIdentifier", ""))
        if entry:
            spec_path = path / "Data" / entry["path"]
            return spec_path, spec_path.parent
    spec_path = path / "Data" / "com.apple.CoreML" / "model.mlmodel"
    if not spec_path.is_file():
        raise CoreMLEmulatorError(f"{path} is not an .mlpackage (no Data/com.apple.CoreML/model.mlmodel)")
    return spec_path, spec_path.parent


def _read_model(path: str | Path) -> tuple[Any, Path]:
    spec_path, model_dir = find_model_spec(Path(path))
    model = model_pb2().Model()
    model.ParseFromString(spec_path.read_bytes())
    if not model.HasField("mlProgram"):
        raise CoreMLEmulatorError(f"{path} holds no ML program (type {model.WhichOneof('Type')})")
    return model, model_dir


def default_function_name(model: Any) -> str:
    """The function a caller gets without naming one: ``defaultFunctionName``, else ``main``."""
    return model.description.defaultFunctionName or "main"


def function_names(path: str | Path) -> list[str]:
    """Names of the ML program functions of a package (``["main"]`` for a single-function model)."""
    model, _ = _read_model(path)
    return list(model.mlProgram.functions)


def _function_description(model: Any, name: str) -> Any:
    """Feature descriptions (``.input``/``.output``) of function ``name``."""
    for desc in model.description.functions:
        if desc.name == name:
            return desc
    if len(model.description.functions):
        raise CoreMLEmulatorError(f"the model description has no entry for function '{name}'")
    return model.description


def load_spec(path: str | Path, function_name: str | None = None) -> LoadedSpec:
    """Parse the package's Model protobuf and select one ML program function.

    ``function_name`` None selects the model's default function (``main`` for single-function
    models); an unknown name raises :class:`CoreMLEmulatorError` listing the available functions.
    """
    model, model_dir = _read_model(path)
    functions = model.mlProgram.functions
    name = function_name if function_name is not None else default_function_name(model)
    if name not in functions:
        raise CoreMLEmulatorError(f"{Path(path).name} has no function '{name}'; available functions: "
                                  + ", ".join(sorted(functions)))
    function = functions[name]
    block = function.block_specializations[function.opset]
    return LoadedSpec(model=model, function=function, block=block, weights_dir=model_dir, function_name=name,
                      description=_function_description(model, name))


def tensor_spec(value_type: Any) -> TensorSpec:
    """Convert a ``MILSpec.ValueType`` to a :class:`TensorSpec` (non-tensors: dtype ``object``)."""
    if value_type.WhichOneof("type") != "tensorType":
        return TensorSpec(object, None)
    tt = value_type.tensorType
    if tt.dataType not in MIL_DTYPES:
        raise CoreMLEmulatorError(f"unsupported MIL data type {tt.dataType}")
    dims: list[int | None] = []
    for dim in tt.dimensions:
        dims.append(int(dim.constant.size) if dim.WhichOneof("dimension") == "constant" else None)
    shape = tuple(dims) if tt.rank >= 0 else None
    return TensorSpec(MIL_DTYPES[tt.dataType][0], shape, tt.dataType)


def unpack_bits(raw: np.ndarray, nbits: int, count: int, signed: bool) -> np.ndarray:
    """Unpack ``count`` ``nbits``-wide integers packed LSB-first in the bytes ``raw``."""
    bits = np.unpackbits(raw.astype(np.uint8), bitorder="little")
    need = count * nbits
    if bits.size < need:
        raise CoreMLEmulatorError(f"packed data holds {bits.size} bits, {need} needed")
    groups = bits[:need].reshape(count, nbits).astype(np.int16)
    values = (groups << np.arange(nbits, dtype=np.int16)).sum(axis=1)
    if signed:
        values = np.where(values >= 1 << (nbits - 1), values - (1 << nbits), values)
        return values.astype(np.int8)
    return values.astype(np.uint8)


def _from_bytes(raw: bytes, spec: TensorSpec) -> np.ndarray:
    shape = tuple(d or 0 for d in (spec.shape or ()))
    count = int(np.prod(shape)) if shape else 1
    np_dtype, nbits = MIL_DTYPES[spec.mil_dtype]
    if nbits < 8:
        arr = unpack_bits(np.frombuffer(raw, np.uint8), nbits, count, spec.mil_dtype in _SIGNED_SUBBYTE)
    else:
        arr = np.frombuffer(raw, dtype=np.dtype(np_dtype).newbyteorder("<"), count=count)
    return arr.astype(np_dtype).reshape(shape)


def read_blob(spec: LoadedSpec, file_name: str, offset: int, tspec: TensorSpec) -> np.ndarray:
    """Read one tensor from a weight blob file (``BlobFileValue``)."""
    data = spec.blobs.get(file_name)
    if data is None:
        rel = file_name.replace("@model_path/", "", 1)
        blob_path = spec.weights_dir / rel
        package = spec.weights_dir.resolve().parents[1]  # <x>.mlpackage/Data/com.apple.CoreML
        if not file_name.startswith("@model_path/") or package not in blob_path.resolve().parents:
            raise CoreMLEmulatorError(f"weight file {file_name} lies outside the .mlpackage: refused")
        if not blob_path.is_file():
            raise CoreMLEmulatorError(f"weight file {file_name} not found under {spec.weights_dir}")
        data = blob_path.read_bytes()
        spec.blobs[file_name] = data
    sentinel, _dtype, size, data_offset = struct.unpack_from("<IIQQ", data, offset)
    if sentinel != _BLOB_SENTINEL:
        raise CoreMLEmulatorError(f"corrupt weight blob at offset {offset} of {file_name}")
    return _from_bytes(data[data_offset:data_offset + size], tspec)


def _immediate_tensor(tensor: Any, tspec: TensorSpec) -> Any:
    kind = tensor.WhichOneof("value")
    shape = tuple(d or 0 for d in (tspec.shape or ()))
    if kind == "strings":
        vals = list(tensor.strings.values)
        return vals[0] if not shape and len(vals) == 1 else vals
    if kind == "bytes":
        return _from_bytes(tensor.bytes.values, tspec)
    if kind is None:
        return np.zeros(shape, dtype=tspec.dtype)
    vals = np.asarray(list(getattr(tensor, kind).values))
    dtype = tspec.dtype if tspec.dtype is not object else vals.dtype
    arr = vals.astype(dtype)
    if arr.size == 1 and int(np.prod(shape)) != 1:
        return np.full(shape, arr.reshape(()), dtype=dtype)
    return arr.reshape(shape)


def decode_value(spec: LoadedSpec, value: Any) -> Any:
    """Decode a ``MILSpec.Value`` (immediate tensor/tuple/list or blob file) to numpy/python."""
    tspec = tensor_spec(value.type)
    kind = value.WhichOneof("value")
    if kind == "blobFileValue":
        return read_blob(spec, value.blobFileValue.fileName, value.blobFileValue.offset, tspec)
    if kind != "immediateValue":
        raise CoreMLEmulatorError(f"cannot decode MIL value of kind {kind}")
    imm = value.immediateValue
    ikind = imm.WhichOneof("value")
    if ikind == "tensor":
        return _immediate_tensor(imm.tensor, tspec)
    if ikind in ("tuple", "list"):
        return [decode_value(spec, v) for v in getattr(imm, ikind).values]
    raise CoreMLEmulatorError(f"cannot decode immediate MIL value of kind {ikind}")
