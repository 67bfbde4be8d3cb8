"""ONNX int8 weight storage with float compute: the ONNX half of the mixed precision.

Every MatMul/Gemm/Conv/ConvTranspose weight initializer (2-D or more) not excluded by the plan is
stored as int8 codes with one max-based symmetric scale per output channel (scale = max|w| / 127,
the quantizer the measured mixed plan models) and turned back into float by Cast + Mul, which ONNX
Runtime folds when the session loads. The layers then compute in float32 on the dequantized
weights: the file is about a quarter of fp32, the masks are those of the fake-quant model the plan
measured, and the speed is fp32's. (onnxruntime's `quantize_dynamic`, used for `int8`, quantizes
activations at run time as well; DequantizeLinear on a weight would be rewritten into MatMulNBits,
which quantizes the input per block; see `tinysam.quant.onnx_qdq`.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from converters.backends.onnx.large import save_onnx
from tinysam.quant.onnx_qdq import cast_mul_dequantize, identity_resolver, replace_nodes, weight_axis

WEIGHT_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose")
# Weights that stay float in every ONNX int8 package: the prompt encoder's, which the recipe never quantizes.
# Its [2, 128] random-Fourier matrix sets the position encoding of every prompt: stored int8 per column, it
# alone cost 1-click agreement 0.987 with the float model on 12 held-out scenes (62 instances), for 768 bytes.
FLOAT_WEIGHT_PREFIX = "model.prompt_encoder."


def float_weight_nodes(graph) -> set[str]:  # noqa: ANN001 - an onnx GraphProto
    """Names of the weight nodes of `graph` whose weight stays float (`FLOAT_WEIGHT_PREFIX`)."""
    resolve = identity_resolver(graph, {i.name for i in graph.initializer})
    return {n.name for n in graph.node if n.op_type in WEIGHT_OPS and len(n.input) > 1
            and resolve(n.input[1]).startswith(FLOAT_WEIGHT_PREFIX)}


def quantize_weights_int8(src: Path, dst: Path, exclude: set[str] | frozenset[str] = frozenset()) -> dict:
    """Write `dst`: `src` with int8 per-channel weights (Cast + Mul) on the nodes not named in `exclude`.

    Returns {"quantized": [node names], "kept_float": [node names]}. The prompt encoder's weights stay float
    (`FLOAT_WEIGHT_PREFIX`).
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    exclude = set(exclude) | float_weight_nodes(graph)
    inits = {i.name: i for i in graph.initializer}
    resolve = identity_resolver(graph, inits)

    new_nodes, quantized, kept, done = [], [], [], {}
    for node in graph.node:
        w_name = resolve(node.input[1]) if node.op_type in WEIGHT_OPS and len(node.input) > 1 else None
        w_init = inits.get(w_name) if w_name else None
        if w_init is None or len(w_init.dims) < 2 or w_init.data_type != onnx.TensorProto.FLOAT:
            new_nodes.append(node)
            continue
        if node.name in exclude:
            kept.append(node.name)
            new_nodes.append(node)
            continue
        axis = weight_axis(node)
        if (w_name, axis) not in done:  # a weight shared by several nodes is stored once
            w = numpy_helper.to_array(w_init).astype(np.float32)
            dims = tuple(d for d in range(w.ndim) if d != axis)
            shape = [1] * w.ndim
            shape[axis] = -1
            scale = (np.abs(w).max(axis=dims) / 127.0).clip(min=1e-12).astype(np.float32).reshape(shape)
            hint = f"{w_name}_int8w"
            codes = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
            graph.initializer.append(numpy_helper.from_array(codes, f"{hint}_codes"))
            graph.initializer.append(numpy_helper.from_array(scale, f"{hint}_scale"))
            new_nodes += cast_mul_dequantize(f"{hint}_codes", f"{hint}_scale", f"{hint}_float", hint)
            done[(w_name, axis)] = f"{hint}_float"
        node.input[1] = done[(w_name, axis)]
        quantized.append(node.name)
        new_nodes.append(node)
    replace_nodes(graph, new_nodes)  # the replaced float weights (and their Identity aliases) go
    save_onnx(model, dst)
    return {"quantized": quantized, "kept_float": kept}
