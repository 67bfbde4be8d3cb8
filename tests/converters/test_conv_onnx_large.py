"""ONNX graphs past the 2 GB limit (SAM ViT-H fp32) keep their weights in one external-data file.

The limit is lowered here so a small TinySAM takes the same path a 2.5 GB ViT-H does.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

import converters.backends.onnx.large as large
from converters.api import build_package, load_model
from converters.options import ConvertOptions
from converters.package import check_hashes


@pytest.fixture
def small_limit(monkeypatch):
    monkeypatch.setattr(large, "EXTERNAL_DATA_BYTES", 1_000_000)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_large_encoder_is_saved_with_external_data(small_limit, tmp_path, precision):
    model, info = load_model("tinysam", None, 64, seed=0)
    res = build_package(model, info, "onnx", ConvertOptions(precision=precision, out_dir=tmp_path))
    assert res.parity["passed"]
    files = json.loads((res.path / "manifest.json").read_text())["files"]
    assert "encoder.onnx.data" in files and check_hashes(res.path) == []
    assert (res.path / "encoder.onnx").stat().st_size < 1_000_000 < (res.path / "encoder.onnx.data").stat().st_size
    sess = ort.InferenceSession(str(res.path / "encoder.onnx"), providers=["CPUExecutionProvider"])
    (emb,) = sess.run(None, {"image": np.zeros((1, 3, 64, 64), np.float32)})
    assert emb.shape == (1, 256, 4, 4)


def test_small_models_stay_one_file(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])
    g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [w])
    path = tmp_path / "m.onnx"
    (path.parent / "m.onnx.data").write_bytes(b"stale")
    assert large.save_onnx(helper.make_model(g), path) == [path]
    assert not (tmp_path / "m.onnx.data").exists()  # a stale data file of an earlier save is gone
    assert large.initializer_bytes(onnx.load(str(path))) == 16


def test_large_models_run_without_the_memory_arena(small_limit, tmp_path, monkeypatch):
    import mobile_runtime.backends.onnx_backend as ob

    model, info = load_model("tinysam", None, 64, seed=0)
    res = build_package(model, info, "onnx", ConvertOptions(precision="fp32", out_dir=tmp_path))
    assert oct((res.path / "encoder.onnx.data").stat().st_mode & 0o777) == oct((res.path / "encoder.onnx").stat().st_mode & 0o777)
    assert ob.OnnxModel(res.path / "encoder.onnx").memory_arena  # 3 MB: small enough for the arena
    monkeypatch.setattr(ob, "ARENA_MAX_MODEL_BYTES", 1_000_000)
    big = ob.OnnxModel(res.path / "encoder.onnx")  # graph + data file count together
    assert not big.memory_arena
    assert big.run({"image": np.zeros((1, 3, 64, 64), np.float32)})["image_embeddings"].shape == (1, 256, 4, 4)
