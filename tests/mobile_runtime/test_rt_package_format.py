"""The typed package format: Manifest round trip, validation errors that name the field in words, and
packages in the layout written before the format module existed still load."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mobile_runtime import load_package
from mobile_runtime.manifest import PackageError, entry_sha256, sha256_file
from mobile_runtime.package_format import LABEL, LABEL_MEANINGS, TARGETS, Manifest, ManifestError

DATA = Path(__file__).parent / "data"
# manifests written by the converters before mobile_runtime.package_format existed (TinySAM 128, fp32)
OLD = {"onnx": DATA / "manifest_v1_onnx_fp32.json", "tflite": DATA / "manifest_v1_tflite_fp32.json"}


def _old(target: str = "onnx") -> dict:
    return json.loads(OLD[target].read_text())


@pytest.mark.parametrize("target", sorted(OLD))
def test_round_trip_is_exact(target):
    data = _old(target)
    m = Manifest.from_dict(data)
    assert m.to_dict() == data and json.dumps(m.to_dict()) == json.dumps(data)
    assert m.target == target and m.kind in TARGETS and m.preprocess.image_size == 128
    assert sorted(m.decoder.variants) == [1, 16] and m.prompts.slots == 8
    assert m.encoder.variants[1].file == f"encoder.{'onnx' if target == 'onnx' else 'tflite'}"


def test_labels_are_the_format_constants():
    assert [int(x) for x in LABEL] == [-2, -1, 0, 1, 2, 3]
    assert LABEL.EMPTY_SLOT == -2 and LABEL_MEANINGS == _old()["prompts"]["labels"]


def _set(path: str, value):
    def edit(d: dict) -> None:
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        if value is _DELETE:
            del d[last]
        else:
            d[last] = value
    return edit


_DELETE = object()
BAD = [
    ("preprocess.pixel_std", [58.0, 0.0, 57.0], "preprocessing 'pixel_std' must be three positive finite numbers"),
    ("preprocess.pixel_std", [58.0, float("nan"), 57.0], "preprocessing 'pixel_std' must be three positive"),
    ("preprocess.pixel_mean", [1.0, 2.0], "preprocessing 'pixel_mean' must be three finite numbers"),
    ("preprocess.pixel_mean", [1.0, float("inf"), 2.0], "preprocessing 'pixel_mean' must be three finite"),
    ("preprocess.image_size", 0, "preprocessing 'image_size' must be a positive int"),
    ("preprocess.image_size", 12.5, "preprocessing 'image_size' must be a positive int"),
    ("preprocess.image_size", _DELETE, "preprocessing 'image_size' must be a positive int"),
    ("preprocess.resize", "nearest", "preprocessing 'resize' must be one of longest_side, stretch"),
    ("preprocess.input_layout", "CHW", "preprocessing 'input_layout' must be one of NCHW, NHWC"),
    ("preprocess.normalization_in_graph", "no", "preprocessing 'normalization_in_graph' must be true or false"),
    ("postprocess.mask_threshold", float("nan"), "postprocessing 'mask_threshold' must be a finite number"),
    ("postprocess.mask_threshold", "0", "postprocessing 'mask_threshold' must be a finite number"),
    ("postprocess.mask_postprocess", "nearest", "postprocessing 'mask_postprocess' must be one of sam, bicubic"),
    ("postprocess.low_res_size", -4, "postprocessing 'low_res_size' must be a positive int"),
    ("prompts.slots", 0, "prompts 'slots' must be a positive int"),
    ("prompts.family", "sam2", "prompts 'family' must be one of sam, efficientsam"),
    ("prompts.max_points", -1, "prompts 'max_points' must be a positive int or null"),
    ("target", "tensorrt", "'target' 'tensorrt' is unknown; choose one of onnx, tflite, coreml"),
    ("precision", "int4", "'precision' must be one of"),
    ("format_version", 2, "'format_version' 2 is not supported"),
    ("preprocess", _DELETE, "preprocessing is missing or not an object"),
    ("postprocess", [], "postprocessing must be an object"),
    ("models.encoder.file", "../encoder.onnx", "encoder model file (K=1) must be a plain relative path"),
    ("models.encoder.file", "/etc/passwd", "encoder model file (K=1) must be a plain relative path"),
    ("models.encoder.file", None, "encoder model file (K=1) must name a file in the package"),
    ("models.decoder.variants", {"1": {"file": "a\\..\\b.onnx"}}, "decoder model file (K=1) must be a plain"),
    ("models.decoder.variants", {"0": {}}, "decoder model variant '0' must be a prompt count K >= 1"),
    ("models.decoder.inputs", [{"shape": [1]}], "decoder model inputs entry"),
    ("models.encoder", _DELETE, "encoder model is missing or not an object"),
    ("files", {"../x": "0" * 64}, "file list entry must be a plain relative path"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD, ids=[f"{p}={v!r}"[:40] for p, v, _ in BAD])
def test_each_bad_field_is_named_in_words(path, value, message):
    data = copy.deepcopy(_old())
    _set(path, value)(data)
    with pytest.raises(ManifestError) as err:
        Manifest.from_dict(data)
    assert str(err.value).startswith("manifest: ") and message in str(err.value), str(err.value)
    assert isinstance(err.value, PackageError) and isinstance(err.value, ValueError)


def test_old_layout_package_loads_and_segments(tinysam128_onnx_package, tmp_path):
    """A package whose manifest is exactly the pre-format-module layout (only the weights' hashes
    differ: the stored fixture was built from the trained weights) opens and segments."""
    pkg = tmp_path / "old"
    shutil.copytree(tinysam128_onnx_package.path, pkg)
    data = _old("onnx")
    files = {k: sha256_file(pkg / k) for k in data["files"] if (pkg / k).is_file()}
    assert set(files) == set(data["files"]), "the package's file set differs from the stored layout"
    data["files"] = files
    for entry in (data["models"]["encoder"], data["models"]["sam_onnx"]):
        entry["sha256"] = entry_sha256(files, entry["file"])
    for v in data["models"]["decoder"]["variants"].values():
        v["sha256"] = entry_sha256(files, v["file"])
    (pkg / "manifest.json").write_text(json.dumps(data, indent=2))
    (pkg / "manifest.sha256").unlink()  # packages of that layout carried no manifest digest
    session = load_package(pkg)
    assert session.batch_sizes == (1, 16) and session.pixel_std == tuple(data["preprocess"]["pixel_std"])
    session.set_image(np.full((96, 128, 3), 127, np.uint8))
    masks, iou, low = session.predict(points=[[40.0, 30.0]], labels=[1])
    assert masks.shape[-2:] == (96, 128) and np.isfinite(iou).all()


def test_session_refuses_a_bad_field_before_opening_models(tinysam128_onnx_package, tmp_path):
    pkg = tmp_path / "bad"
    shutil.copytree(tinysam128_onnx_package.path, pkg)
    data = json.loads((pkg / "manifest.json").read_text())
    data["preprocess"]["pixel_std"] = [1.0, -1.0, 1.0]
    (pkg / "manifest.json").write_text(json.dumps(data))
    (pkg / "manifest.sha256").unlink()  # an older package without the digest: validation is what stops it
    with pytest.raises(PackageError, match="manifest: preprocessing 'pixel_std' must be three positive finite"):
        load_package(pkg)
