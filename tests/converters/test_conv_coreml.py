"""CoreML packages: fp32 converts, passes parity (emulated mlprogram off macOS), sizes match params;
the decoder is one multifunction package holding one copy of the decoder weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from converters.api import build_package, dir_size
from converters.backends.coreml.export import MULTIFUNCTION_MIN_OS
from converters.examples import decoder_sample
from converters.options import ConvertOptions
from converters.package import check_hashes
from converters.spec import ExportSpec
from mobile_runtime.backends import open_model
from mobile_runtime.backends.coreml_emulator import function_names


def _weight_bytes(package) -> int:
    return sum(p.stat().st_size for p in package.rglob("weights/*.bin"))


def test_coreml_fp32_package(tiny_model, tmp_path):
    model, info = tiny_model
    res = build_package(model, info, "coreml", ConvertOptions(precision="fp32", out_dir=tmp_path))
    assert res.parity["passed"] and res.parity["metrics"]["mask_iou_mean"] >= 0.999
    manifest = json.loads((res.path / "manifest.json").read_text())
    assert check_hashes(res.path) == []
    dec = manifest["models"]["decoder"]
    assert {k: (v["file"], v["signature"]) for k, v in dec["variants"].items()} == {
        "1": ("decoder.mlpackage", "decoder_k1"), "16": ("decoder.mlpackage", "decoder_k16")}
    assert dec["multifunction"] == {"default_function": "decoder_k1", "min_os": MULTIFUNCTION_MIN_OS}
    assert sorted(p.name for p in res.path.glob("*.mlpackage")) == ["decoder.mlpackage", "encoder.mlpackage"]
    assert sorted(function_names(res.path / "decoder.mlpackage")) == ["decoder_k1", "decoder_k16"]
    # one copy of the decoder weights for both functions (and no folded per-prompt broadcasts):
    # the package weighs what the decoder's parameters weigh in fp32, not twice that
    n_params = sum(p.numel() for m in (model.prompt_encoder, model.mask_decoder) for p in m.parameters())
    assert 0.9 * 4 * n_params < _weight_bytes(res.path / "decoder.mlpackage") < 1.15 * 4 * n_params
    assert dir_size(res.path / "decoder.mlpackage") < 1.15 * 4 * n_params
    assert "decoder_k16" in (res.path / "README.md").read_text()

    # each function answers with its own K and matches the reference decoder
    spec = ExportSpec(model.config, "coreml", "fp32")
    names = [t.name for t in spec.decoder_inputs(1)]
    for k in (1, 16):
        m = open_model(res.path / "decoder.mlpackage", "coreml", signature=f"decoder_k{k}")
        feeds = dict(zip(names, (a.numpy() for a in decoder_sample(spec, k))))
        got = m.run(feeds)
        with torch.no_grad():
            ref_lo, ref_iou = model.decode_prompts(*(torch.from_numpy(feeds[n]) for n in names))
        assert got["low_res_masks"].shape == (k, 4, spec.low_res_size, spec.low_res_size)
        np.testing.assert_allclose(got["low_res_masks"], ref_lo.numpy(), atol=2e-3, rtol=1e-3)
        np.testing.assert_allclose(got["iou_predictions"], ref_iou.numpy(), atol=2e-3, rtol=1e-3)
    with pytest.raises(ValueError, match="available functions: decoder_k1, decoder_k16"):
        open_model(res.path / "decoder.mlpackage", "coreml", signature="decoder_k4")
