"""LiteRT ops found by weight values (`converters.backends.litert.op_match`), in a real decoder conversion:
every decoder layer is found in every signature, no op is claimed twice, and each layer's scope regex
selects exactly its own ops, and Linears after a LayerNorm are found through the fold. (The fused names that made module-path regexes select a neighbour's op
appear in the 1024 px conversion of the trained weights, not in this seeded model's.)"""

from __future__ import annotations

import re

import pytest


@pytest.fixture(scope="module")
def decoder_ops(tiny_model, tmp_path_factory):
    import copy

    import torch

    from converters.backends.litert.export import float_decoder
    from converters.backends.litert.op_match import layer_ops_by_weight
    from converters.spec import ExportSpec
    from converters.w8a8 import snapped_copy
    from tinysam.quant.qmodel import quant_layers, quantize_model

    model = copy.deepcopy(tiny_model[0])
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # LayerNorms with a real affine, which the converter folds into the Linear after them
        for m in model.mask_decoder.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=gen))
    q = snapped_copy(quantize_model(model), [])  # the converted model: the fake-quant layers, quantization off
    path = tmp_path_factory.mktemp("opmatch") / "decoder.tflite"
    float_decoder(q, ExportSpec(model.config, "tflite", "fp32"), path)
    names = [n for n, m in quant_layers(q).items() if n.startswith("mask_decoder.") and m.kind != "matmul"]
    return q, path, names, layer_ops_by_weight(path, q, names)


def test_every_decoder_layer_found_once_per_signature(decoder_ops):
    from ai_edge_litert.tools import flatbuffer_utils as fb

    _, path, names, found = decoder_ops
    assert set(found) == set(names)
    full = {0, 1}  # the k1 and k16 signatures hold the whole decoder
    assert len(fb.read_model(str(path)).subgraphs) >= 2
    for n in names:
        assert full <= {o.subgraph for o in found[n]}, n
    scopes = [(o.subgraph, o.scope) for ops in found.values() for o in ops]
    assert len(scopes) == len(set(scopes))  # no op is claimed by two layers


def test_scope_regex_selects_only_the_layers_ops(decoder_ops):
    from converters.backends.litert.op_match import scope_regex

    _, _, _, found = decoder_ops
    all_scopes = {o.scope for ops in found.values() for o in ops}
    for ops in found.values():
        assert {s for s in all_scopes if re.search(scope_regex(ops), s)} == {o.scope for o in ops}


def test_layers_with_a_folded_layernorm_are_found_and_named(decoder_ops):
    from converters.backends.litert.op_match import folded_layers

    q, path, names, found = decoder_ops
    folded = folded_layers(path, q, names)
    # each MLP's first Linear reads a LayerNorm's output directly: LiteRT multiplies its weight by gamma
    assert {"mask_decoder.transformer.layers.0.mlp.lin1", "mask_decoder.transformer.layers.1.mlp.lin1"} <= set(folded)
    assert not any(n.endswith(("q_proj", "k_proj")) and ".layers.0." in n for n in folded)  # PE added first: no fold
