"""The spec decides once which decoder inputs exist; every export and the manifest agree with it."""

from __future__ import annotations

import inspect
import json

import onnxruntime as ort
import pytest

from converters.api import build_package, load_model
from converters.options import ConvertOptions
from converters.spec import ExportSpec
from converters.wrappers import decoder_module, sam_onnx_module
from tinysam.config import get_config


@pytest.mark.parametrize("target", ["onnx", "tflite", "coreml"])
def test_spec_drops_mask_inputs_for_models_without_them(target):
    eff = ExportSpec(get_config("efficientsam_ti", 128), target, "fp32")
    sam = ExportSpec(get_config("tinysam", 128), target, "fp32")
    assert [t.name for t in eff.decoder_inputs(1)] == ["image_embeddings", "point_coords", "point_labels"]
    assert [t.name for t in sam.decoder_inputs(1)][3:] == ["mask_input", "has_mask_input"]
    assert "mask_input" not in [t.name for t in eff.sam_onnx_inputs()]


def test_wrappers_take_exactly_the_spec_inputs():
    for name in ("efficientsam_ti", "tinysam"):
        model, _ = load_model(name, None, 64, seed=0)
        spec = ExportSpec(model.config, "onnx", "fp32")
        assert list(inspect.signature(decoder_module(model).forward).parameters) == \
            [t.name for t in spec.decoder_inputs(1)]
        assert list(inspect.signature(sam_onnx_module(model).forward).parameters) == \
            [t.name for t in spec.sam_onnx_inputs()]


def test_efficientsam_onnx_manifest_lists_the_graph_inputs(tmp_path):
    model, info = load_model("efficientsam_ti", None, 64, seed=0)
    res = build_package(model, info, "onnx", ConvertOptions(precision="fp32", out_dir=tmp_path))
    assert res.parity["passed"]
    manifest = json.loads((res.path / "manifest.json").read_text())
    assert manifest["prompts"]["supports_mask_input"] is False
    for entry, files in ((manifest["models"]["decoder"], ["decoder_k1.onnx", "decoder_k16.onnx"]),
                         (manifest["models"]["sam_onnx"], ["decoder_sam_onnx.onnx"])):
        for f in files:
            sess = ort.InferenceSession(str(res.path / f), providers=["CPUExecutionProvider"])
            assert [i.name for i in sess.get_inputs()] == [e["name"] for e in entry["inputs"]], f
