"""Compile-time (``constexpr_*``) ops that decompress weights: quantized, palettized, sparse.

They run once at load time. iOS16/17 forms (``constexpr_affine_dequantize``,
``constexpr_lut_to_dense`` with packed uint8 indices, ``constexpr_sparse_to_dense`` with a packed
bit mask) and iOS18 forms (``constexpr_blockwise_shift_scale``, ``constexpr_lut_to_dense`` with
typed sub-byte indices and grouped palettes, ``constexpr_sparse_to_dense`` with a uint1 mask) are
both supported.
"""

from __future__ import annotations

import numpy as np

from .ops_common import OpCall, OpFn, norm_axis
from .program import unpack_bits


def promote(param: np.ndarray, rank: int, axis: int) -> np.ndarray:
    """Give a scalar/vector ``param`` the data's rank, its values along ``axis``."""
    param = np.asarray(param)
    if param.ndim == rank:
        return param
    if param.ndim == 0:
        return param.reshape((1,) * rank)
    shape = [1] * rank
    shape[axis] = -1
    return param.reshape(shape)


def _affine_dequantize(call: OpCall) -> np.ndarray:
    data = call.x("quantized_data")
    axis = norm_axis(int(call.get("axis", 0)), data.ndim)
    zero = promote(call.x("zero_point").astype(np.float32), data.ndim, axis)
    scale = promote(call.x("scale"), data.ndim, axis)
    return (data.astype(np.float32) - zero) * scale


def _repeat_blocks(param: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Repeat each axis of a per-block parameter up to the data's shape."""
    for axis, (dim, pdim) in enumerate(zip(shape, param.shape, strict=True)):
        if pdim != dim:
            if dim % pdim:
                raise ValueError(f"block parameter shape {param.shape} does not tile data shape {shape}")
            param = np.repeat(param, dim // pdim, axis=axis)
    return param


def _blockwise_shift_scale(call: OpCall) -> np.ndarray:
    data = call.x("data").astype(np.float32)
    scale = _repeat_blocks(call.x("scale"), data.shape)
    if call.inputs.get("offset") is not None:
        data = data - _repeat_blocks(call.x("offset").astype(np.float32), data.shape)
    return scale * data


def _lut_to_dense(call: OpCall) -> np.ndarray:
    lut = call.x("lut")
    indices = call.x("indices")
    if call.inputs.get("shape") is not None:  # iOS16/17: 1-D lut, packed uint8 indices
        shape = call.ints("shape")
        nbits = int(np.log2(lut.size))
        idx = unpack_bits(indices.reshape(-1), nbits, int(np.prod(shape)), signed=False)
        return lut.reshape(-1)[idx.astype(np.int64)].reshape(shape)
    # iOS18: indices typed with the output shape; lut [*blocks, palettes, vector_size]
    if lut.shape[-1] != 1:
        raise call.unsupported("vector palettization (vector_size > 1)")
    rank = indices.ndim
    grids = []
    for axis in range(rank):
        block = indices.shape[axis] // lut.shape[axis]
        shape = [1] * rank
        shape[axis] = -1
        grids.append((np.arange(indices.shape[axis]) // block).reshape(shape))
    return lut[tuple(grids) + (indices.astype(np.int64), 0)]


def _sparse_to_dense(call: OpCall) -> np.ndarray:
    values = call.x("nonzero_data")
    mask = call.x("mask")
    if call.inputs.get("shape") is not None:  # iOS16/17: packed bit mask
        shape = call.ints("shape")
        bits = unpack_bits(mask.reshape(-1), 1, int(np.prod(shape)), signed=False).astype(bool)
    else:
        shape, bits = list(mask.shape), mask.reshape(-1).astype(bool)
    out = np.zeros(int(np.prod(shape)), dtype=values.dtype)
    out[bits] = values
    return out.reshape(shape)


def _constexpr_cast(call: OpCall) -> np.ndarray:
    return call.x("source_val").astype(call.out_dtype())


CONSTEXPR_OPS: dict[str, OpFn] = {
    "constexpr_affine_dequantize": _affine_dequantize,
    "constexpr_blockwise_shift_scale": _blockwise_shift_scale,
    "constexpr_lut_to_dense": _lut_to_dense,
    "constexpr_sparse_to_dense": _sparse_to_dense,
    "constexpr_cast": _constexpr_cast,
}
