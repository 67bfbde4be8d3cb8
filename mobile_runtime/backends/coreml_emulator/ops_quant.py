"""Run-time ``quantize`` / ``dequantize`` (iOS17): static int8/uint8 activations with given scales.

``quantize``: clip(round(input / scale) + zero_point) in the output dtype (round half to even);
``dequantize``: (input - zero_point) * scale. ``scale``/``zero_point`` are scalars or vectors along
``axis``; a missing zero point is 0.
"""

from __future__ import annotations

import numpy as np

from .ops_common import OpCall, OpFn, norm_axis
from .ops_constexpr import promote


def _params(call: OpCall, rank: int) -> tuple[np.ndarray, np.ndarray]:
    axis = call.get("axis")
    axis = norm_axis(int(axis), rank) if axis is not None else 0
    scale = promote(np.asarray(call.x("scale"), np.float32), rank, axis)
    zp = call.inputs.get("zero_point")
    zero = promote(np.asarray(zp, np.float32), rank, axis) if zp is not None else np.float32(0.0)
    return scale, zero


def _quantize(call: OpCall) -> np.ndarray:
    x = call.x("input").astype(np.float32)
    scale, zero = _params(call, x.ndim)
    dtype = np.dtype(call.out_dtype())
    if dtype.kind not in "iu":
        raise call.unsupported(f"output dtype {dtype}")
    info = np.iinfo(dtype)
    return np.clip(np.rint(x / scale) + zero, info.min, info.max).astype(dtype)


def _dequantize(call: OpCall) -> np.ndarray:
    x = call.x("input")
    scale, zero = _params(call, x.ndim)
    return ((x.astype(np.float32) - zero) * scale).astype(np.float32)


QUANT_OPS: dict[str, OpFn] = {"quantize": _quantize, "dequantize": _dequantize}
