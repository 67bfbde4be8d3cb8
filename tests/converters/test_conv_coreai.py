"""Apple Core AI packages, run in coreai-core's own runtime (no mocks): the trained default TinySAM at
128 px converts, passes parity, verifies, segments, runs everything mode without importing torch in the
runtime, and keeps the decoder as one multifunction asset with one copy of the weights.

The Core AI runtime on Linux is single-threaded and slow: one fp32 package is built per module; the
compressed precisions are `slow` tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("coreai.runtime")
pytest.importorskip("coreai_torch")
pytest.importorskip("coreai_opt")

from converters.api import convert, dir_size  # noqa: E402
from converters.backends.coreai.capabilities import COMPATIBILITY_VERSION, MULTIFUNCTION_MIN_OS  # noqa: E402
from converters.examples import decoder_sample  # noqa: E402
from converters.options import ConvertOptions  # noqa: E402
from converters.package import check_hashes  # noqa: E402
from converters.spec import FAKE_QUANT_THRESHOLDS, MIN_OS, PARITY_THRESHOLDS, ExportSpec  # noqa: E402
from converters.verify import verify_package  # noqa: E402
from mobile_runtime.backends import open_model  # noqa: E402
from tests.runtime_probe import RUNTIME_PROBE  # noqa: E402
from tinysam.defaults import resolve_default_weights  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def coreai_cache(tmp_path_factory):
    """A lowering cache of this module's own, so the tests see what a fresh machine sees."""
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("coreai-cache")
    mp.setenv("TINYSAM_COREAI_CACHE", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def fp32_package(tmp_path_factory, coreai_cache):
    out = tmp_path_factory.mktemp("coreai-pkg")
    (res,) = convert("tinysam", ConvertOptions(targets="coreai", precision="fp32", out_dir=out))
    return res


def test_fp32_package(fp32_package):
    res = fp32_package
    m = res.parity["metrics"]
    assert res.parity["passed"] and m["mask_iou_mean"] >= 0.999 and m["embedding_rel_error"] < 1e-5
    assert res.parity["runtime"] == "coreai"
    manifest = json.loads((res.path / "manifest.json").read_text())
    assert check_hashes(res.path) == []
    assert manifest["target"] == "coreai" and manifest["min_os"] == MIN_OS["coreai"]
    enc, dec = manifest["models"]["encoder"], manifest["models"]["decoder"]
    assert (enc["file"], enc["signature"], enc["compatibility_version"]) == ("encoder.aimodel", "main",
                                                                             COMPATIBILITY_VERSION)
    assert {k: (v["file"], v["signature"]) for k, v in dec["variants"].items()} == {
        "1": ("decoder.aimodel", "decoder_k1"), "16": ("decoder.aimodel", "decoder_k16")}
    assert dec["multifunction"] == {"default_function": "decoder_k1", "min_os": MULTIFUNCTION_MIN_OS}
    readme = (res.path / "README.md").read_text()
    assert "## Known issues" in readme and "hyper" not in readme and "(B^T @ A^T)^T" in readme
    # one copy of the decoder weights for both functions: the asset weighs the decoder's fp32 parameters
    model_params = _decoder_params()
    assert 0.9 * 4 * model_params < dir_size(res.path / "decoder.aimodel") < 1.15 * 4 * model_params


def _decoder_params() -> int:
    from converters.api import load_model

    ck, size, _ = resolve_default_weights("tinysam", None, None)
    model, _ = load_model("tinysam", ck, size)
    return sum(p.numel() for m in (model.prompt_encoder, model.mask_decoder) for p in m.parameters())


def test_functions_match_reference(fp32_package):
    from converters.api import load_model

    ck, size, _ = resolve_default_weights("tinysam", None, None)
    model, _ = load_model("tinysam", ck, size)
    spec = ExportSpec(model.config, "coreai", "fp32")
    names = [t.name for t in spec.decoder_inputs(1)]
    for k in (1, 16):
        m = open_model(fp32_package.path / "decoder.aimodel", "coreai", signature=f"decoder_k{k}")
        assert m.input_names == names and m.output_names == ["low_res_masks", "iou_predictions"]
        args = decoder_sample(spec, k)
        args[3][::2] = torch.randn_like(args[3][::2])  # every other prompt with a mask input
        args[4][::2] = 1.0
        feeds = dict(zip(names, (a.numpy() for a in args)))
        got = m.run(feeds)
        with torch.no_grad():
            ref_lo, ref_iou = model.decode_prompts(*args)
        np.testing.assert_allclose(got["low_res_masks"], ref_lo.numpy(), atol=1e-3)
        np.testing.assert_allclose(got["iou_predictions"], ref_iou.numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="available functions: decoder_k1, decoder_k16"):
        open_model(fp32_package.path / "decoder.aimodel", "coreai", signature="decoder_k4")


def test_verify_and_segment(fp32_package, tmp_path):
    ck, _, _ = resolve_default_weights("tinysam", None, None)
    report = verify_package(fp32_package.path, checkpoint=ck)
    assert report["ok"] and report["parity"]["metrics"]["mask_iou_mean"] >= 0.999
    out = subprocess.run([sys.executable, "cli.py", "segment", "--package", str(fp32_package.path), "--image",
                          str(ROOT / "calibration_data" / "photos" / "astronaut.jpg"),
                          "--point", "40,40", "--out", str(tmp_path / "seg")], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert any((tmp_path / "seg").glob("*.png"))


def test_runtime_everything_without_torch(fp32_package, coreai_cache):
    out = subprocess.run([sys.executable, "-c", RUNTIME_PROBE, str(fp32_package.path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "TINYSAM_COREAI_CACHE": str(coreai_cache)})
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["modules"] == []
    assert result["shape"] == [3, 80, 120] and result["records"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp16", "int8", "mixed", "palette6", "palette4", "w8a8-opt"])
def test_compressed_packages(precision, tmp_path, coreai_cache):
    (res,) = convert("tinysam", ConvertOptions(targets="coreai", precision=precision, out_dir=tmp_path))
    assert res.parity["passed"], res.parity["failures"]
    assert res.parity["metrics"]["mask_iou_mean"] >= PARITY_THRESHOLDS[precision]["mask_iou_mean"]
    if precision != "fp16":  # every compressed package is also held to its own fake-quant model
        fq = res.parity["fake_quant"]
        assert fq["passed"] and fq["thresholds"] == dict(FAKE_QUANT_THRESHOLDS["coreai"])
        assert fq["metrics"]["mask_iou_mean"] >= (0.95 if precision == "w8a8-opt" else 0.999)
