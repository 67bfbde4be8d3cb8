"""`converters.backends.litert.layout`: no-op TRANSPOSE/RESHAPE runs collapse, values stay bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from converters.backends.litert.layout import collapse_layout_chains


class TokensConv(nn.Module):
    """TinyViT's pattern: tokens [B, HW, C] -> NCHW depthwise conv -> tokens, then a real transpose."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.fc = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        y = x.transpose(1, 2).reshape(b, c, 8, 8)
        y = self.conv(y).flatten(2).transpose(1, 2)
        return self.fc(y).transpose(1, 2)  # a transpose that does move elements: must stay


def _ops(path) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    return [o["op_name"] for o in Interpreter(model_path=str(path))._get_ops_details()]


def _run(path, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    import litert_torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("layout") / "m.tflite"
    litert_torch.convert(TokensConv().eval(), (torch.randn(1, 64, 16),)).export(str(path))
    return path


def test_noop_runs_collapse_and_values_are_identical(converted, tmp_path):
    before = _ops(converted)
    x = np.random.default_rng(0).standard_normal((1, 64, 16)).astype(np.float32)
    want = _run(converted, x)
    out = tmp_path / "collapsed.tflite"
    out.write_bytes(converted.read_bytes())
    res = collapse_layout_chains(out)
    after = _ops(out)
    assert res["transposes_removed"] >= 2 and after.count("TRANSPOSE") == before.count("TRANSPOSE") - res["transposes_removed"]
    assert after.count("TRANSPOSE") >= 1  # the final transpose moves elements and is kept
    np.testing.assert_array_equal(_run(out, x), want)
    assert collapse_layout_chains(out) == {"transposes_removed": 0, "ops_removed": 0}  # nothing left to do


def test_collapsed_file_calibrates_with_litert_quantizer(converted, tmp_path):
    """No orphan tensors are left behind: the quantizer's calibrator reads every tensor."""
    from litert_quantizer import qtyping, quantizer, recipe_manager

    out = tmp_path / "collapsed.tflite"
    out.write_bytes(converted.read_bytes())
    assert collapse_layout_chains(out)["transposes_removed"] >= 2
    rm = recipe_manager.RecipeManager()
    rm.add_static_config(".*", qtyping.TFLOperationName.FULLY_CONNECTED, 8, 8)
    q = quantizer.Quantizer(str(out))
    q.load_quantization_recipe(rm.get_quantization_recipe())
    x = np.random.default_rng(1).standard_normal((1, 64, 16)).astype(np.float32)
    q.quantize(q.calibrate({"serving_default": [{"args_0": x}]})).export_model(str(tmp_path / "q.tflite"))
    assert "FULLY_CONNECTED" in _ops(tmp_path / "q.tflite")


def test_tinysam_float_encoder_names_every_layer_output_after_its_layer(tiny_model, tmp_path):
    """`converters.backends.litert.names` in the real export: rules that select layers by output name reach
    every FULLY_CONNECTED/CONV op (TinyViT's attention `proj` outputs used to carry the block's name)."""
    from ai_edge_litert.interpreter import Interpreter

    from converters.backends.litert.export import float_encoder
    from converters.backends.litert.names import LAYER_OPS, layer_path
    from converters.spec import ExportSpec

    model, _ = tiny_model
    path = tmp_path / "encoder.tflite"
    float_encoder(model, ExportSpec(model.config, "tflite", "fp32"), path)
    it = Interpreter(model_path=str(path))
    names = {d["index"]: d["name"] for d in it.get_tensor_details()}
    layers = [o for o in it._get_ops_details() if o["op_name"] in LAYER_OPS]
    assert sum("Linear_proj" in names[o["outputs"][0]] for o in layers) == 10  # one per attention block
    for o in layers:
        assert layer_path(names[o["inputs"][1]]) in names[o["outputs"][0]], names[o["outputs"][0]]
