"""ONNX package: decoder weights stored once (size vs parameter count), parity on real photos, zips."""

from __future__ import annotations

import json
import shutil
import zipfile

import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from calibration_data import bundled_images
from converters.api import dir_size
from converters.parity import check_parity
from converters.parity_data import ParityDataError
from converters.verify import describe_package, verify_package

DECODERS = ("decoder_k1.onnx", "decoder_k16.onnx", "decoder_sam_onnx.onnx")


def _params(model, *parts: str) -> int:
    return sum(p.numel() for part in parts for p in getattr(model, part).parameters())


def test_fp32_package_size_matches_parameter_count(tinysam128_onnx_package, tiny_model):
    model, _ = tiny_model
    path = tinysam128_onnx_package.path
    n_all = _params(model, "image_encoder", "prompt_encoder", "mask_decoder")
    n_dec = _params(model, "prompt_encoder", "mask_decoder")
    assert abs(dir_size(path) - 4 * n_all) < 0.15 * 4 * n_all  # one copy of every weight, 4 bytes each
    assert abs((path / "decoder.weights").stat().st_size - 4 * n_dec) < 0.15 * 4 * n_dec
    for name in DECODERS:  # the graphs themselves hold no large weights
        assert (path / name).stat().st_size < 0.05 * 4 * n_dec, name


def test_decoder_graphs_share_one_weights_file(tinysam128_onnx_package, tmp_path):
    path = tinysam128_onnx_package.path
    manifest = json.loads((path / "manifest.json").read_text())
    shared = manifest["models"]["decoder"]["weights"]
    split = ["decoder_prep.onnx", "decoder_fast_k1.onnx", "decoder_fast_k16.onnx", "decoder_fast_k64.onnx"]
    assert shared["file"] == "decoder.weights" and shared["shared_by"] == list(DECODERS) + split
    assert "decoder.weights" in (path / "README.md").read_text()
    offsets = []
    for name in DECODERS:
        m = onnx.load(str(path / name), load_external_data=False)
        ext = [{e.key: e.value for e in t.external_data} for t in m.graph.initializer if t.external_data]
        assert ext and {e["location"] for e in ext} == {"decoder.weights"}, name
        offsets.append({e["offset"] for e in ext})
        ort.InferenceSession(str(path / name), providers=["CPUExecutionProvider"])  # loads on its own
    assert offsets[0] == offsets[1]  # K=1 and K=16 read the very same bytes
    copy = tmp_path / "nodata"
    shutil.copytree(path, copy)
    (copy / "decoder.weights").unlink()
    with pytest.raises(Exception):  # noqa: B017 - onnxruntime raises its own types
        ort.InferenceSession(str(copy / "decoder_k1.onnx"), providers=["CPUExecutionProvider"])


def test_parity_report_names_real_photos_and_prompt_count(tinysam128_onnx_package):
    inputs = tinysam128_onnx_package.parity["inputs"]
    photos = bundled_images()[:2]
    assert inputs["source"] == "bundled"
    assert [im["name"] for im in inputs["images"]] == [p.name for p in photos]
    for im in inputs["images"]:  # aspect ratio kept: longest side to 128, the other scaled
        h, w = im["original_size"]
        assert max(im["input_size"]) == 128 and im["input_size"] == [int(h * 128 / max(h, w) + 0.5),
                                                                      int(w * 128 / max(h, w) + 0.5)]
    # 17 prompts for the full decoders, 1 + 16 + 64 for the split decoder's batch variants
    assert inputs["prompts_per_image"] == 17 + 81 and inputs["prompts_total"] == 2 * 98
    assert tinysam128_onnx_package.parity["metrics"]["masks_compared"] == 2 * 98 * 4


def test_parity_on_calibration_dir_and_missing_data_is_an_error(tinysam128_onnx_package, tiny_model, tmp_path):
    model, _ = tiny_model
    path = tinysam128_onnx_package.path
    manifest = json.loads((path / "manifest.json").read_text())
    calib = tmp_path / "calib"
    calib.mkdir()
    photos = bundled_images()
    for p in photos[2:7]:
        shutil.copy(p, calib / p.name)
    report = check_parity(model, path, manifest, calibration=calib)
    assert report["passed"], report["failures"]
    assert report["inputs"]["source"] == "calibration"
    names = [im["name"] for im in report["inputs"]["images"]]
    assert names == sorted(p.name for p in photos[2:7])[:4]  # the first 4 of the directory
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ParityDataError, match="no images"):
        check_parity(model, path, manifest, calibration=empty)
    (calib / "aaa_broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ParityDataError, match="aaa_broken"):  # no silent skipping either
        check_parity(model, path, manifest, calibration=calib)


def _zip(src, dst, extra: tuple[str, bytes] | None = None):
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(src.rglob("*")):
            zf.write(p, f"{src.name}/{p.relative_to(src).as_posix()}")
        if extra:
            zf.writestr(*extra)
    return dst


def test_verify_and_info_accept_zip(tinysam128_onnx_package, tmp_path):
    from cli import main

    good = _zip(tinysam128_onnx_package.path, tmp_path / "pkg.zip")
    assert verify_package(good, parity=False)["ok"]
    assert describe_package(good)["target"] == "onnx"
    runner = CliRunner()
    out = runner.invoke(main, ["verify", str(good)])
    assert out.exit_code == 0 and "OK (hashes and parity)" in out.output
    out = runner.invoke(main, ["info", str(good)])
    assert out.exit_code == 0 and "target: onnx" in out.output
    evil = _zip(tinysam128_onnx_package.path, tmp_path / "evil.zip", ("../escape.txt", b"x"))
    out = runner.invoke(main, ["verify", str(evil)])
    assert out.exit_code != 0 and "escapes" in out.output
    assert not (tmp_path / "escape.txt").exists()
