"""ONNX files store no big tensors folded from small parameters: they are computed in-graph, exactly."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper

from converters.backends.onnx.compact import compact_file
from converters.backends.onnx.export import _torch_export
from converters.examples import decoder_sample
from converters.spec import ExportSpec
from converters.wrappers import EncoderWrapper, decoder_module


def _run(path, feeds: dict) -> list[np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _float_consts(path, size: int) -> int:
    """How many float consts of `size` elements the graph stores."""
    m = onnx.load(str(path))
    arrays = [numpy_helper.to_array(t) for t in m.graph.initializer if t.data_type in (1, 10)]
    arrays += [numpy_helper.to_array(n.attribute[0].t) for n in m.graph.node if n.op_type == "Constant"]
    return sum(a.size == size and a.dtype.kind == "f" for a in arrays)


def test_attention_bias_gathers_computed_in_graph(tiny_model, tmp_path):
    model, _ = tiny_model
    path = tmp_path / "enc.onnx"
    _torch_export(EncoderWrapper(model), (torch.randn(1, 3, 128, 128),), path, ["image"], ["image_embeddings"])
    x = {"image": np.random.default_rng(0).standard_normal((1, 3, 128, 128)).astype(np.float32)}
    before, size = _run(path, x)[0], path.stat().st_size
    assert compact_file(path, model) == {"attention_bias": 10}
    assert path.stat().st_size < size - 4_000_000  # 4.9 MB of [heads, N, N] tables gone
    np.testing.assert_array_equal(_run(path, x)[0], before)  # a gather: bit-exact
    assert compact_file(path, model) == {}  # nothing left to do


def test_folded_dense_positional_encoding_computed_in_graph(tiny_model, tmp_path):
    from onnxruntime.quantization import quant_pre_process

    model, _ = tiny_model
    spec = ExportSpec(model.config, "onnx", "int8")
    raw, path = tmp_path / "dec_raw.onnx", tmp_path / "dec.onnx"
    names = [t.name for t in spec.decoder_inputs(1)]
    sample = decoder_sample(spec, 1)
    _torch_export(decoder_module(model), sample, raw, names, [t.name for t in spec.decoder_outputs(1)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quant_pre_process(str(raw), str(path), skip_symbolic_shape=True)  # folds the dense PE, as int8 does
    e = spec.embedding_size
    assert _float_consts(path, 256 * e * e) == 1
    feeds = {n: a.numpy() for n, a in zip(names, sample)}
    before = _run(path, feeds)
    assert compact_file(path, model) == {"dense_pe": 1}
    assert _float_consts(path, 256 * e * e) == 0
    for got, want in zip(_run(path, feeds), before):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_folded_relative_position_lookups_computed_in_graph(tmp_path):
    """SAM ViT `rel_pos[rel_index]` lookups, folded by the int8 pre-processing, become gathers again."""
    from onnxruntime.quantization import quant_pre_process

    from tinysam.modeling.image_encoder import ImageEncoderViT

    torch.manual_seed(0)
    enc = ImageEncoderViT(img_size=128, embed_dim=128, depth=2, num_heads=2, out_chans=16, use_rel_pos=True,
                          window_size=14, global_attn_indexes=(1,)).eval()
    with torch.no_grad():  # zeros at init, as upstream: random, so each lookup has its own values
        for name, p in enc.named_parameters():
            if "rel_pos" in name:
                p.copy_(torch.randn(p.shape))
    raw, path = tmp_path / "enc_raw.onnx", tmp_path / "enc.onnx"
    _torch_export(enc, (torch.randn(1, 3, 128, 128),), raw, ["image"], ["image_embeddings"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quant_pre_process(str(raw), str(path), skip_symbolic_shape=True)  # folds the lookups, as int8 does
    sizes = {"window": 14 * 14 * 64, "global": 8 * 8 * 64}  # [q, k, head_dim] per block and axis
    assert {k: _float_consts(path, n) for k, n in sizes.items()} == {"window": 2, "global": 2}
    x = {"image": np.random.default_rng(0).standard_normal((1, 3, 128, 128)).astype(np.float32)}
    before = _run(path, x)[0]
    assert compact_file(path, enc) == {"rel_pos": 4}
    assert {k: _float_consts(path, n) for k, n in sizes.items()} == {"window": 0, "global": 0}
    np.testing.assert_allclose(_run(path, x)[0], before, rtol=1e-6, atol=1e-6)  # a gather: the same values
    assert compact_file(path, enc) == {}
