"""LiteRT layer outputs named after their layer, so rules that select layers by name reach all of them.

The converter names a tensor after the module whose code produced the op's fused result. For most
FULLY_CONNECTED/CONV ops that is the layer itself (`.../Linear_qkv;2`), but where the layer's output
is reshaped by its parent in the same expression (TinyViT's `self.proj(...)` followed by the window
reversal) the output carries the parent's name (`.../TinyViTBlock_0;4`). litert-quantizer selects
ops by their output tensor name, so plan rules and the W8A8 recipe silently missed those layers
(every attention `proj` stayed float).

`name_layer_outputs` gives each such output its layer's name, taken from the op's weight tensor
(`.../Linear_proj;1` -> `.../Linear_proj;out`, numbered when the name is taken). Only names change; the graph and values do not.
"""

from __future__ import annotations

from pathlib import Path

from converters.backends.litert.flatbuffer import builtin_code, tensor_name, write_in_place

LAYER_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV")
_WEIGHT_INPUT = {"TRANSPOSE_CONV": 1}  # TRANSPOSE_CONV: (output_shape, weights, input, bias)


def layer_path(name: str) -> str:
    """`scope/…/Linear_proj;1` -> `scope/…/Linear_proj` (the layer's module path). A weight folded
    from several modules is named `A;;B;1` (a LayerNorm's affine folded into the next Linear): B."""
    return name.split(";;")[-1].rsplit(";", 1)[0]


def name_layer_outputs(path: Path) -> int:
    """Rewrite `path` in place where a layer op's output is not named after its layer; count renamed."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fb

    codes = {getattr(schema.BuiltinOperator, k): k for k in LAYER_OPS}
    fm = fb.read_model(str(path))
    taken = {tensor_name(t) for sg in fm.subgraphs for t in sg.tensors}  # names must stay unique in the file
    renamed = 0
    for sg in fm.subgraphs:
        for op in sg.operators:
            kind = codes.get(builtin_code(fm, op))
            if kind is None:
                continue
            w = sg.tensors[op.inputs[_WEIGHT_INPUT.get(kind, 1)]]
            layer = layer_path(tensor_name(w))
            out = sg.tensors[op.outputs[0]]
            if "/" in layer and layer not in tensor_name(out):
                name, n = f"{layer};out", 1
                while name in taken:  # the same layer in another signature's subgraph
                    name, n = f"{layer};out{n}", n + 1
                out.name = name
                taken.add(name)
                renamed += 1
    if renamed:
        write_in_place(fm, path)
    return renamed
