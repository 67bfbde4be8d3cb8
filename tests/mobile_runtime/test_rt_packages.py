"""The runtime on packages made by `converters` gives the reference `tinysam.SamPredictor`'s answers.

Seeded (untrained) models at 128 px are converted once per test session (`converter_packages`).
By default: ONNX packages of tinysam (SAM prompt family, always-multimask) and efficientsam_ti
(EfficientSAM prompt family), so every prompt kind of each family is compared (masks per mask
IoU >= 0.999, low-res logits and predicted IoUs close). Slow to convert, so under `-m slow`:
mobilesam (same decoder family as tinysam), CoreML packages (run through the bundled emulator;
converters' parity tests also run them) and LiteRT.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mobile_runtime import load_package

ROOT = Path(__file__).resolve().parents[2]
SIZE = 128
MODELS = ("tinysam", "mobilesam", "efficientsam_ti")
SLOW = pytest.mark.slow
LOGIT_ATOL = 2e-3  # fp32 runtimes vs torch: accumulated rounding only
IOU_ATOL = 1e-4


@pytest.fixture(scope="module")
def image(test_image: np.ndarray) -> np.ndarray:
    """Non-square RGB image with flat shapes (padding and cropping both matter): conftest's."""
    return test_image


@pytest.fixture(scope="module")
def packages(converter_packages) -> dict:
    """Converter-made packages (session-wide, built on first use)."""
    assert converter_packages.SIZE == SIZE
    return converter_packages


class _References(dict):
    """model name -> reference predictor on the seeded weights the packages were built from (lazy)."""

    def __missing__(self, name: str):
        import tinysam
        from converters.api import load_model

        self[name] = tinysam.SamPredictor(load_model(name, None, SIZE, seed=0)[0])
        return self[name]


@pytest.fixture(scope="module")
def references() -> _References:
    return _References()


def _prompts(family: str, mask: np.ndarray) -> list[tuple[str, dict]]:
    """Named prompts (original-image pixels) valid for `family`."""
    cases = [
        ("point", dict(points=[[50.0, 40.0]], labels=[1])),
        ("box", dict(box=[90.0, 15.0, 140.0, 75.0])),
        ("points+box", dict(points=[[110.0, 45.0]], labels=[1], box=[90.0, 15.0, 140.0, 75.0])),
    ]
    if family == "sam":
        cases += [
            ("pos+neg", dict(points=[[50.0, 40.0], [115.0, 40.0]], labels=[1, 0])),
            ("mask_input", dict(points=[[50.0, 40.0]], labels=[1], mask_input=mask)),
        ]
    else:
        cases.append(("two points", dict(points=[[50.0, 40.0], [115.0, 40.0]], labels=[1, 1])))
    return cases


def _reference(pred, prompt: dict, multimask: bool):
    return pred.predict(point_coords=None if "points" not in prompt else np.asarray(prompt["points"]),
                        point_labels=None if "labels" not in prompt else np.asarray(prompt["labels"]),
                        box=None if "box" not in prompt else np.asarray(prompt["box"]),
                        mask_input=prompt.get("mask_input"), multimask_output=multimask)


def _mask_ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    inter = np.logical_and(a, b).sum(axis=(-2, -1))
    union = np.logical_or(a, b).sum(axis=(-2, -1))
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def _check_model(session, pred, image: np.ndarray) -> int:
    """Compare every prompt x multimask setting; returns the number of masks compared."""
    session.set_image(image)
    pred.set_image(image)
    family = session.family
    seed_mask = _reference(pred, {"points": [[60.0, 50.0]], "labels": [1]}, True)[2][0]
    compared = 0
    for name, prompt in _prompts(family, seed_mask):
        for multimask in (True, False):
            ref_m, ref_iou, ref_low = _reference(pred, prompt, multimask)
            m, iou, low = session.predict(**prompt, multimask_output=multimask)
            where = f"{session.manifest['model']['name']}/{session.manifest['target']}: {name}, multimask={multimask}"
            assert m.shape == ref_m.shape and m.dtype == bool, where
            assert _mask_ious(m, ref_m).min() >= 0.999, where
            np.testing.assert_allclose(low, ref_low, atol=LOGIT_ATOL, rtol=1e-3, err_msg=where)
            np.testing.assert_allclose(iou, ref_iou, atol=IOU_ATOL, err_msg=where)
            compared += len(m)
    return compared


@pytest.mark.parametrize("name", ["tinysam", "efficientsam_ti", pytest.param("mobilesam", marks=SLOW)])
def test_onnx_package_matches_reference(packages, references, image, name: str) -> None:
    session = load_package(packages[(name, "onnx")])
    assert session.batch_sizes == (1, 16)
    assert _check_model(session, references[name], image) >= 16


def test_tinysam_always_multimask(packages, references, image) -> None:
    """TinySAM never uses token 0: a single mask is the best-IoU one of tokens 1..3."""
    session = load_package(packages[("tinysam", "onnx")])
    assert session.always_multimask
    session.set_image(image)
    prompt = dict(points=[[50.0, 40.0]], labels=[1])
    _, iou1, low1 = session.predict(**prompt, multimask_output=False)
    _, iou3, low3 = session.predict(**prompt, multimask_output=True)
    best = int(np.argmax(iou3))
    assert low1.shape[0] == 1 and iou1[0] == iou3[best]
    np.testing.assert_array_equal(low1[0], low3[best])


def test_batched_prompts_match_single(packages, image) -> None:
    """K=16 and K=1 decoder variants agree (the everything mode relies on it)."""
    session = load_package(packages[("tinysam", "onnx")])
    session.set_image(image)
    pts = np.stack(np.meshgrid(np.linspace(5, 145, 6), np.linspace(5, 90, 3)), -1).reshape(-1, 1, 2)
    masks, iou, _ = session.predict_batch(points=pts, labels=np.ones((len(pts), 1)))
    calls = session.decoder_calls
    for i in (0, 7, 17):
        m1, iou1, _ = session.predict(points=pts[i], labels=[1])
        assert _mask_ious(m1, masks[i]).min() >= 0.999
        np.testing.assert_allclose(iou1, iou[i], atol=IOU_ATOL)
    assert session.decoder_calls == calls + 3


SCRIPT = """
import json, sys
import numpy as np
import mobile_runtime
s = mobile_runtime.load_package(sys.argv[1])
img = (np.arange(80 * 120 * 3) % 251).astype(np.uint8).reshape(80, 120, 3)
s.set_image(img)
m, iou, low = s.predict(points=[[30.0, 40.0]], labels=[1], box=[10, 10, 90, 70])
recs = mobile_runtime.EverythingGenerator(s, mode="hierarchical", points_per_side=8,
                                          pred_iou_thresh=0.0, stability_score_thresh=0.0).generate(img)
print(json.dumps({"shape": list(m.shape), "finite": bool(np.isfinite(low).all()), "records": len(recs),
                  "modules": sorted(k for k in sys.modules if k.split(".")[0] in ("torch", "tinysam", "converters"))}))
"""


@pytest.mark.parametrize("target", ["onnx", pytest.param("coreml", marks=SLOW)])
def test_converter_package_runs_without_torch(packages, target: str) -> None:
    path = packages[("tinysam", target)]
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["modules"] == []
    assert result["shape"] == [3, 80, 120] and result["finite"] and result["records"] > 0


def test_manifest_decoder_variants_are_the_contract(packages) -> None:
    """Converter manifests name decoder files per variant (no top-level file for ONNX/CoreML)."""
    manifest = json.loads((packages[("efficientsam_ti", "onnx")] / "manifest.json").read_text())
    dec = manifest["models"]["decoder"]
    assert "file" not in dec
    assert {k: v["file"] for k, v in dec["variants"].items()} == {"1": "decoder_k1.onnx", "16": "decoder_k16.onnx"}


@pytest.mark.slow
def test_litert_package_matches_reference(packages, references, image) -> None:
    path = packages[("tinysam", "tflite")]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["models"]["decoder"]["inputs"][0]["name"] == "args_0"
    session = load_package(path)
    assert session.batch_sizes == (1, 16)
    assert _check_model(session, references["tinysam"], image) >= 20


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_coreml_packages_match_reference_slow(packages, references, image, name: str) -> None:
    manifest = json.loads((packages[(name, "coreml")] / "manifest.json").read_text())
    variants = manifest["models"]["decoder"]["variants"]  # both K: functions of one multifunction package
    assert {k: (v["file"], v["signature"]) for k, v in variants.items()} == {
        "1": ("decoder.mlpackage", "decoder_k1"), "16": ("decoder.mlpackage", "decoder_k16")}
    session = load_package(packages[(name, "coreml")])
    assert session.batch_sizes == (1, 16)
    assert _check_model(session, references[name], image) >= 16


def test_decoder_variants_reader() -> None:
    from mobile_runtime.manifest import PackageError, decoder_variants

    tfl = {"file": "decoder.tflite", "variants": {"1": {"signature": "k1"}, "16": {"signature": "k16"}}}
    assert decoder_variants(tfl) == {1: {"file": "decoder.tflite", "signature": "k1"},
                                     16: {"file": "decoder.tflite", "signature": "k16"}}
    assert decoder_variants({"file": "d.onnx"}) == {1: {"file": "d.onnx", "signature": None}}
    with pytest.raises(PackageError, match="names no file"):
        decoder_variants({"variants": {"1": {"signature": None}}})
    with pytest.raises(PackageError, match="prompt count"):
        decoder_variants({"variants": {"x": {"file": "d.onnx"}}})
