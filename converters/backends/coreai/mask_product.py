"""Export-time rewrite of the decoder's mask product for Core AI (a workaround for a miscompile).

The mask decoder ends with `masks = hyper_in @ upscaled.reshape(b, c, h * w)`: [K, 4, C] @ [K, C, H*W].
Core AI (coreai-torch 0.4.3 / coreai-core 1.0.0b3, Linux runtime) computes this batched matmul wrongly
(mask logit error 33-42 at 128 px; the IoU head is right), and so are `bmm` + `flatten` and a 2-D
matmul of the same operands. The transposed form `(B^T @ A^T)^T` computes correctly. This module
rewrites that ONE product in the exported (decomposed) program; the reference model is untouched, so
every other target keeps its graph. `tests/converters/test_conv_coreai_mask_product.py` proves the
rewritten program equals the reference decoder in torch, and the parity gate checks it in Core AI.
"""

from __future__ import annotations

import torch
from torch.export import ExportedProgram

_BMM = torch.ops.aten.bmm.default
_PERMUTE = torch.ops.aten.permute.default


def mask_product_nodes(ep: ExportedProgram, num_masks: int, low_res_size: int) -> list[torch.fx.Node]:
    """The `bmm` nodes computing [K, num_masks, C] @ [K, C, low_res_size**2] (the mask product)."""
    out = []
    for node in ep.graph.nodes:
        if node.op == "call_function" and node.target is _BMM:
            shape = tuple(node.meta["val"].shape)
            if len(shape) == 3 and shape[1] == num_masks and shape[2] == low_res_size * low_res_size:
                out.append(node)
    return out


def _with_val(graph: torch.fx.Graph, op, args: tuple, fake_mode) -> torch.fx.Node:
    """Insert `op(*args)` with its fake value in `meta["val"]` (converters read shapes from it)."""
    node = graph.call_function(op, args)
    with fake_mode:
        node.meta["val"] = op(*(a.meta["val"] if isinstance(a, torch.fx.Node) else a for a in args))
    return node


def transpose_mask_product(ep: ExportedProgram, num_masks: int, low_res_size: int) -> ExportedProgram:
    """Rewrite the decoder's mask product `A @ B` as `(B^T @ A^T)^T` in place; returns `ep`.

    Exactly one such product must exist: any other count means the decoder changed and the
    workaround no longer knows what it rewrites, which is an error rather than a silent no-op.
    """
    nodes = mask_product_nodes(ep, num_masks, low_res_size)
    if len(nodes) != 1:
        raise RuntimeError(f"expected one mask product bmm [K,{num_masks},C]@[K,C,{low_res_size ** 2}] in the "
                           f"decoder, found {len(nodes)}; the Core AI workaround must be revisited")
    node = nodes[0]
    a, b = node.args
    graph = ep.graph
    fake_mode = node.meta["val"].fake_mode
    with graph.inserting_before(node):
        bt = _with_val(graph, _PERMUTE, (b, [0, 2, 1]), fake_mode)
        at = _with_val(graph, _PERMUTE, (a, [0, 2, 1]), fake_mode)
        prod = _with_val(graph, _BMM, (bt, at), fake_mode)
        result = _with_val(graph, _PERMUTE, (prod, [0, 2, 1]), fake_mode)
    result.meta.update({k: v for k, v in node.meta.items() if k != "val"})
    node.replace_all_uses_with(result)
    graph.erase_node(node)
    graph.lint()
    ep.graph_module.recompile()
    return ep
