"""Passes of ExecuTorch exports: on the model before export, and on the edge graph before lowering.

`gathered_attention_biases` (every ExecuTorch export): TinyViT's window attention adds a per-head bias
table gathered to [heads, N, N] (`tiny_vit.Attention.bias_cache`). ExecuTorch would store these caches as
float32 constants: 4.9 MB of the TinySAM encoder's 28.3 MB, more than the int8 weights of the whole encoder.
The export gathers them from the tables at run time instead (one `index_select` per attention, outside the
delegate, on constants only): exact values; 28.3 -> 23.5 MB fp32 and 9.3 -> 7.2 MB for a mixed encoder; about
1 ms of 180 at 1024 px, 2 threads. (float16 caches cast at run time, the earlier form, saved half of it.)

`QUANTIZED_EDGE_PASSES`: graph rewrites that let XNNPACK take the attention whole (see there).

`layer_norms_by_linear` (every ExecuTorch export, fp32 included): LayerNorm in ops XNNPACK runs.

`without_unused_buffers` (every exported program): ExecuTorch drops unused parameters but keeps unused buffers.
The decoder programs are exported from a wrapper of the whole model, so the fp32 decoder.pte held the encoder's
attention bias caches and indices: 21.7 MB instead of 16.2.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import torch
from torch import nn


def _gathered_bias(self: nn.Module) -> torch.Tensor:
    n = self.attention_bias_idxs.shape[0]
    return self.attention_biases.index_select(1, self.attention_bias_idxs.reshape(-1)).view(-1, n, n)


def _no_cache() -> None:
    pass


@contextlib.contextmanager
def gathered_attention_biases(model: nn.Module) -> Iterator[int]:
    """Within the block, every TinyViT attention of `model` gathers its [heads, N, N] bias from its table at run
    time (`index_select`, the exact values) instead of adding the cache, which is taken out of the module so
    that the exported program does not hold it (`eval()` does not rebuild it meanwhile); yields the cache bytes
    left out. `model` is restored on exit."""
    from tinysam.modeling.tiny_vit import Attention

    caches = {m: m._buffers.pop("bias_cache") for m in model.modules() if isinstance(m, Attention)}  # noqa: SLF001
    for m in caches:
        m.bias = types.MethodType(_gathered_bias, m)
        m.refresh_bias_cache = _no_cache
    try:
        yield sum(c.numel() * c.element_size() for c in caches.values())
    finally:
        for m, cache in caches.items():
            del m.bias, m.refresh_bias_cache
            m._buffers["bias_cache"] = cache  # noqa: SLF001 - the buffer taken out above


def _layer_norm_by_linear(self: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    d = x - torch.nn.functional.linear(x, self.mean_row)
    y = d * torch.rsqrt(torch.nn.functional.linear(d * d, self.mean_row) + self.eps)
    return y if self.weight is None else y * self.weight + self.bias


@contextlib.contextmanager
def layer_norms_by_linear(model: nn.Module) -> Iterator[int]:
    """Within the block, every last-axis `nn.LayerNorm` of `model` takes its mean and variance as a Linear with
    one 1/C row (then sub, mul, rsqrt, add): ops XNNPACK runs, where `native_layer_norm` has no XNNPACK form and
    runs on one thread in the portable kernels. Yields the number of LayerNorms; `model` is restored on exit.

    Measured at 1024 px, 2 threads (TinySAM encoder, interleaved medians of 7): fp32 355 -> 342 ms, every
    Linear/Conv2d static int8 210 -> 195 ms; the embedding moves by float rounding only."""
    mods = [m for m in model.modules() if isinstance(m, nn.LayerNorm) and len(m.normalized_shape) == 1]
    for m in mods:
        c = m.normalized_shape[0]
        m.register_buffer("mean_row", torch.full((1, c), 1.0 / c), persistent=False)
        m.forward = types.MethodType(_layer_norm_by_linear, m)
    try:
        yield len(mods)
    finally:
        for m in mods:
            del m.forward
            del m._buffers["mean_row"]  # noqa: SLF001 - the buffer registered above


def _drop_noop_expands(gm: torch.fx.GraphModule):  # noqa: ANN202 - an executorch PassResult
    """Remove `expand_copy` nodes whose output has their input's shape (4-D attention products decompose
    into expand + bmm with nothing to broadcast); XNNPACK takes no expand, so each one split a partition."""
    from executorch.exir.dialects._ops import ops as exir_ops
    from executorch.exir.pass_base import PassResult

    changed = False
    for node in list(gm.graph.nodes):
        if node.op == "call_function" and node.target == exir_ops.edge.aten.expand_copy.default:
            src = node.args[0]
            if tuple(src.meta["val"].shape) == tuple(node.meta["val"].shape):
                node.replace_all_uses_with(src)
                gm.graph.erase_node(node)
                changed = True
    gm.recompile()
    return PassResult(gm, changed)


def _splits_as_slices(gm: torch.fx.GraphModule):  # noqa: ANN202 - an executorch PassResult
    """Replace `split_with_sizes_copy` (the attention's q/k/v split, which XNNPACK does not take) by one
    `slice_copy` per part, which it does."""
    import operator

    from executorch.exir.dialects._ops import ops as exir_ops
    from executorch.exir.pass_base import PassResult

    changed = False
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target != exir_ops.edge.aten.split_with_sizes_copy.default:
            continue
        src, sizes = node.args[0], list(node.args[1])
        dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
        if any(user.target is not operator.getitem for user in node.users):
            continue
        for user in list(node.users):
            i = user.args[1]
            start = sum(sizes[:i])
            with gm.graph.inserting_before(user):
                part = gm.graph.call_function(exir_ops.edge.aten.slice_copy.Tensor, (src, dim, start, start + sizes[i], 1))
            part.meta = dict(user.meta)
            user.replace_all_uses_with(part)
            gm.graph.erase_node(user)
        gm.graph.erase_node(node)
        changed = True
    gm.recompile()
    return PassResult(gm, changed)


# Edge passes for quantized programs. Measured at 1024 px, 2 threads (TinySAM encoder, every Linear/Conv2d
# static int8 but the fc2s, interleaved medians of 5): 298 ms without them, 230 ms with the expand pass,
# 221 ms with both. fp32 programs do not take them: the same passes made the fp32 encoder slower (355 ms ->
# 448 ms), so they are left out there.
QUANTIZED_EDGE_PASSES = (_drop_noop_expands, _splits_as_slices)


def without_unused_buffers(ep: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """`ep` without the buffers and constant tensors no op reads (in place; returns `ep`)."""
    from torch.export.graph_signature import InputKind

    sig = ep.graph_signature
    mutated = set(sig.buffers_to_mutate.values())
    nodes = {n.name: n for n in ep.graph_module.graph.nodes if n.op == "placeholder"}
    unused = [s for s in sig.input_specs
              if s.kind in (InputKind.BUFFER, InputKind.CONSTANT_TENSOR) and s.target not in mutated
              and not nodes[s.arg.name].users]
    for spec in unused:
        sig.input_specs.remove(spec)
        ep.state_dict.pop(spec.target, None)
        ep.constants.pop(spec.target, None)
        ep.graph_module.graph.erase_node(nodes[spec.arg.name])
    ep.graph_module.recompile()
    return ep
