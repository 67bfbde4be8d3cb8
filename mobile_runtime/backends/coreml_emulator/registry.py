"""The table of implemented ML program ops (op type -> implementation)."""

from __future__ import annotations

from .ops_common import OpFn
from .ops_constexpr import CONSTEXPR_OPS
from .ops_elementwise import BINARY, UNARY
from .ops_nn import NN_OPS
from .ops_norm import NORM_OPS, REDUCE_OPS
from .ops_quant import QUANT_OPS
from .ops_tensor import TENSOR_OPS

OPS: dict[str, OpFn] = {**BINARY, **UNARY, **TENSOR_OPS, **NN_OPS, **NORM_OPS, **REDUCE_OPS,
                        **CONSTEXPR_OPS, **QUANT_OPS}
