"""LiteRT attention-bias compaction: the folded [1, heads, N, N] constant becomes GATHER(table, index)."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import torch

from converters.backends.litert.compact import compact_tflite_biases
from tinysam.modeling.tiny_vit import Attention


def _window_attention() -> torch.nn.Module:
    torch.manual_seed(0)
    attn = Attention(dim=32, key_dim=8, num_heads=4, resolution=(7, 7))
    with torch.no_grad():
        attn.attention_biases.normal_()
    return attn.eval()  # eval: the bias comes from the folded cache


def _run(path, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()


def test_compaction_replaces_the_folded_bias_and_keeps_the_output(tmp_path):
    import litert_torch

    attn = _window_attention()
    x = torch.randn(3, 49, 32)
    src = tmp_path / "attn.tflite"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        litert_torch.convert(attn, (x,)).export(str(src))
    dst = tmp_path / "compact.tflite"
    shutil.copyfile(src, dst)
    info = compact_tflite_biases(dst, attn)
    assert info["replaced"] == 1
    folded, table, index = 4 * 49 * 49 * 4, 4 * 49 * 4, 49 * 49 * 4  # fp32 [4, 49, 49]; fp32 [4, 49]; int32 [49, 49]
    assert info["bytes_saved"] == folded - table - index
    assert src.stat().st_size - dst.stat().st_size > info["bytes_saved"] - 1024
    np.testing.assert_array_equal(_run(dst, x.numpy()), _run(src, x.numpy()))
    with torch.no_grad():
        np.testing.assert_allclose(_run(dst, x.numpy()), attn(x).numpy(), atol=1e-4)
    assert compact_tflite_biases(dst, attn) == {"replaced": 0, "bytes_saved": 0}  # nothing folded is left
    from converters.backends.litert.export import tensor_names

    added = [n for n in tensor_names(dst) if n.endswith("_table") or n.startswith("attention_bias_index")]
    assert len(added) == 2 and not any(n.startswith("b'") for n in added)  # text names, not bytes reprs
