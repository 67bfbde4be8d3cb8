"""Insert QuantizeLinear/DequantizeLinear nodes carrying our searched scales into an ONNX graph.

Input: an fp32 ONNX file exported (legacy exporter, constant folding on) from the fake-quant model
with quantization switched off, so node names carry the module paths (`.../attn/qkv/MatMul`,
`.../attn/matmul_qk/MatMul`) and weights are the BN-folded ones the scales were searched for.
For every enabled layer with a uniform (int8-expressible) quantizer: its activation input(s) get
Q -> DQ with the per-tensor scale (zero point 0), its weight initializer is replaced by an int8
initializer + per-axis DequantizeLinear. Twin-uniform operands are left float (the plan lists them
as fp16). ONNX Runtime then runs the graph with its QDQ int8 kernels where it can fuse them.

A layer whose input stays float (twin-uniform kinds) keeps int8 weights too, dequantized by
Cast + Mul instead of DequantizeLinear: ONNX Runtime 1.31 rewrites DequantizeLinear(int8 weight) ->
MatMul with a float input into MatMulNBits with accuracy_level 4, which quantizes that input to
int8 per block of 32 at run time, a quantization the recipe does not have. Cast + Mul of
initializers is folded to the same float weight when the session loads.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

QDQ_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose")


def _layer_for_node(node_name: str, layers: dict) -> str | None:
    """Longest layer path that the node's scope ends with."""
    parts = node_name.strip("/").split("/")[:-1]
    # Sequential children appear as ".../seq/seq.0/...": drop the parent part that the child repeats
    parts = [p for i, p in enumerate(parts) if not (i + 1 < len(parts) and parts[i + 1].startswith(p + "."))]
    scope = ".".join(parts)
    best = None
    for name in layers:
        if (scope == name or scope.endswith("." + name)) and (best is None or len(name) > len(best)):
            best = name
    if best is None and scope:
        # a method that calls submodules directly (e.g. `decode_prompts`) drops the outer scopes:
        # `/transformer/layers.0/...` is `mask_decoder.transformer.layers.0...`; take it only if unambiguous
        tails = [name for name in layers if name.endswith("." + scope)]
        best = tails[0] if len(tails) == 1 else None
    return best


def weight_axis(node) -> int:  # noqa: ANN001
    """Output-channel axis of the weight (input 1) of a MatMul/Gemm/Conv/ConvTranspose node."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return 1  # MatMul: B = W^T [in, out]


def identity_resolver(graph, inits: dict) -> Callable[[str], str]:  # noqa: ANN001 - an onnx GraphProto
    """A function from a tensor name to the initializer behind it: the exporter dedups equal weights
    through Identity nodes, so a node's weight input may be an Identity's output."""
    producers = {o: n for n in graph.node for o in n.output}

    def resolve(name: str) -> str:
        while name not in inits and name in producers and producers[name].op_type == "Identity":
            name = producers[name].input[0]
        return name

    return resolve


def cast_mul_dequantize(int8_name: str, scale_name: str, out: str, hint: str) -> list:
    """Nodes computing float `out` = float(`int8_name`) * `scale_name` (folded by ONNX Runtime at load)."""
    import onnx
    from onnx import helper

    cast = f"{hint}_w_float"
    return [helper.make_node("Cast", [int8_name], [cast], to=onnx.TensorProto.FLOAT, name=f"{hint}/weight/Cast"),
            helper.make_node("Mul", [cast, scale_name], [out], name=f"{hint}/weight/Mul")]


def replace_nodes(graph, nodes: list) -> None:  # noqa: ANN001 - an onnx GraphProto
    """Give `graph` the node list `nodes`, minus Identity nodes nobody reads any more, and drop the
    initializers no node reads (the float weights that int8 copies replaced)."""
    live = {i for n in nodes for i in n.input} | {o.name for o in graph.output}
    nodes = [n for n in nodes if n.op_type != "Identity" or any(o in live for o in n.output)]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def apply_quant_scales_onnx(onnx_path: str | Path, qmodel_description: dict | str | Path,
                            out_path: str | Path) -> dict:
    """Write `out_path`: `onnx_path` with QDQ nodes using our scales. Returns {"quantized", "skipped"}."""
    import onnx
    from onnx import helper, numpy_helper

    from .export_format import read_description

    desc = qmodel_description if isinstance(qmodel_description, dict) else read_description(qmodel_description)
    bits = desc.get("bits", "w8a8")
    layers = {n: d for n, d in desc["layers"].items() if d.get("enabled")}
    for n, d in layers.items():
        if d.get("a_bits") != 8 or d.get("w_bits") not in (8, None):
            raise ValueError(f"ONNX QDQ needs 8-bit weights and activations; layer {n} is {bits}")
    model = onnx.load(str(onnx_path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    for c in graph.node:  # weights the exporter left as Constant nodes count as initializers too
        if c.op_type == "Constant" and len(c.output) == 1:
            val = next((a.t for a in c.attribute if a.name == "value"), None)
            if val is not None and len(val.dims) >= 2:
                inits.setdefault(c.output[0], val)
    resolve = identity_resolver(graph, inits)
    new_nodes, quantized, skipped = [], [], []
    counter = [0]

    def add_init(arr: np.ndarray, hint: str) -> str:
        counter[0] += 1
        name = f"{hint}_{counter[0]}"
        graph.initializer.append(numpy_helper.from_array(arr, name))
        return name

    def qdq_act(tensor: str, scale: float, hint: str) -> str:
        s = add_init(np.array(scale, dtype=np.float32), f"{hint}_scale")
        z = add_init(np.array(0, dtype=np.int8), f"{hint}_zp")
        q, dq = f"{hint}_q_{counter[0]}", f"{hint}_dq_{counter[0]}"
        new_nodes.append(helper.make_node("QuantizeLinear", [tensor, s, z], [q], name=f"{hint}/QuantizeLinear"))
        new_nodes.append(helper.make_node("DequantizeLinear", [q, s, z], [dq], name=f"{hint}/DequantizeLinear"))
        return dq

    for node in graph.node:
        name = _layer_for_node(node.name, layers) if node.op_type in QDQ_OPS else None
        if name is None:
            new_nodes.append(node)
            continue
        d = layers[name]
        hint = name.replace(".", "_")
        if d["kind"] == "matmul":
            if d["a_kind"] == "uniform":
                node.input[0] = qdq_act(node.input[0], d["a_scale"], hint + "_a")
            node.input[1] = qdq_act(node.input[1], d["b_scale"], hint + "_b")
        else:
            w_init = inits.get(resolve(node.input[1]))
            if w_init is None:
                skipped.append({"layer": name, "node": node.name, "reason": "weight is not an initializer"})
                new_nodes.append(node)
                continue
            if d["a_kind"] == "uniform":
                node.input[0] = qdq_act(node.input[0], d["a_scale"], hint + "_x")
            w = numpy_helper.to_array(w_init).astype(np.float32)
            axis = weight_axis(node)
            scale = np.asarray(d["w_scale"], dtype=np.float32)
            if w.shape[axis] != scale.size:
                skipped.append({"layer": name, "node": node.name, "reason": f"weight {w.shape} vs {scale.size} scales"})
                new_nodes.append(node)
                continue
            shape = [1] * w.ndim
            shape[axis] = -1
            wq = np.clip(np.round(w / scale.reshape(shape)), -128, 127).astype(np.int8)
            wq_name = add_init(wq, hint + "_w_int8")
            dq = f"{hint}_w_dq"
            if d["a_kind"] == "uniform":
                s = add_init(scale, hint + "_w_scale")
                z = add_init(np.zeros(scale.size, dtype=np.int8), hint + "_w_zp")
                new_nodes.append(helper.make_node("DequantizeLinear", [wq_name, s, z], [dq], axis=axis,
                                                  name=f"{hint}/weight/DequantizeLinear"))
            else:  # float input: Cast + Mul, see the module docstring
                s = add_init(scale.reshape(shape), hint + "_w_scale")
                new_nodes += cast_mul_dequantize(wq_name, s, dq, hint)
            node.input[1] = dq
        quantized.append(name)
        new_nodes.append(node)
    replace_nodes(graph, new_nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
    return {"quantized": quantized, "skipped": skipped}
