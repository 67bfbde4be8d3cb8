"""ONNX packages: fp32/fp16/int8 parity in onnxruntime, manifest, verify, atomicity, SAM signature."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import converters.backends.onnx.export as onnx_export
from converters.api import build_package
from converters.options import ConvertOptions
from converters.package import check_hashes
from converters.verify import verify_package
from converters.wrappers import SamOnnxDecoder


@pytest.fixture(scope="module")
def onnx_fp32(tinysam128_onnx_package):
    return tinysam128_onnx_package


def test_fp32_package_passes_parity_and_manifest_is_complete(onnx_fp32):
    res = onnx_fp32
    m = res.parity["metrics"]
    assert res.parity["passed"] and m["mask_iou_mean"] >= 0.999 and m["embedding_rel_error"] < 1e-4
    assert m["sam_onnx_mask_iou_mean"] >= 0.999
    manifest = json.loads((res.path / "manifest.json").read_text())
    for key in ("format_version", "model", "target", "precision", "min_os", "preprocess", "postprocess",
                "prompts", "models", "files", "everything", "precision_plan", "parity", "tools"):
        assert key in manifest, key
    assert manifest["model"]["trained"] is False and manifest["model"]["checkpoint_sha256"] is None
    assert set(manifest["files"]) == {"README.md", "encoder.onnx", "decoder_k1.onnx", "decoder_k16.onnx",
                                      "decoder_sam_onnx.onnx", "decoder.weights", "decoder_prep.onnx",
                                      "decoder_fast_k1.onnx", "decoder_fast_k16.onnx", "decoder_fast_k64.onnx"}
    assert m["split_decoder_mask_iou_mean"] >= 0.999
    assert manifest["models"]["decoder"]["variants"]["16"]["file"] == "decoder_k16.onnx"
    assert check_hashes(res.path) == []
    assert "Untrained weights" in (res.path / "README.md").read_text()


def test_verify_detects_modified_file(onnx_fp32, tmp_path):
    import shutil

    copy = tmp_path / onnx_fp32.path.name
    shutil.copytree(onnx_fp32.path, copy)
    ok = verify_package(copy)
    assert ok["ok"] and ok["parity"]["passed"]
    with open(copy / "decoder_k1.onnx", "r+b") as f:
        f.seek(-10, 2)
        f.write(b"\x00" * 10)
    bad = verify_package(copy)
    assert not bad["ok"] and bad["hash_problems"] == ["hash mismatch: decoder_k1.onnx"]


def test_exception_midway_leaves_nothing(tiny_model, tmp_path, monkeypatch):
    model, info = tiny_model
    real = onnx_export._convert_precision
    calls = []

    def fail_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(onnx_export, "_convert_precision", fail_on_second)
    with pytest.raises(RuntimeError, match="injected"):
        build_package(model, info, "onnx", ConvertOptions(precision="fp32", out_dir=tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_sam_onnx_decoder_matches_reference_predictor(tiny_model):
    from tinysam.predictor import SamPredictor

    model, _ = tiny_model
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)  # not square: crop + resize matter
    pred = SamPredictor(model)
    pred.set_image(image)
    point = np.array([[40.0, 30.0]])
    masks, iou, low = pred.predict(point_coords=point, point_labels=np.array([1]), multimask_output=True,
                                   return_logits=True)
    coords = pred.transform.apply_coords(point, pred.original_size)
    c = torch.tensor(np.concatenate([coords, [[0.0, 0.0]]])[None], dtype=torch.float32)
    lab = torch.tensor([[1.0, -1.0]])
    lr = 4 * model.embedding_size
    dec = SamOnnxDecoder(model, return_single_mask=False)
    with torch.no_grad():
        up, scores, low4 = dec(pred.get_image_embedding(), c, lab, torch.zeros(1, 1, lr, lr), torch.zeros(1),
                               torch.tensor([90.0, 120.0]))
    assert up.shape == (1, 4, 90, 120)
    np.testing.assert_allclose(up[0, 1:].numpy(), masks, atol=1e-4)
    np.testing.assert_allclose(scores[0, 1:].numpy(), iou, atol=1e-5)
    single = SamOnnxDecoder(model)(pred.get_image_embedding(), c, lab, torch.zeros(1, 1, lr, lr), torch.zeros(1),
                                   torch.tensor([90.0, 120.0]))
    best = int(np.argmax(iou))
    np.testing.assert_allclose(single[0][0, 0].detach().numpy(), masks[best], atol=1e-4)
