"""NaN and Inf can pass no check: the parity gate and every metric count them as failure (two NaN masks
are not two agreeing empty masks; `max(0, nan)` is 0), predictors refuse NaN outputs, checkpoints with
NaN/Inf are refused unless explicitly allowed, and no output file holds a bare NaN."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from rel_helpers import assert_one_line_failure

from cli import main
from converters.parity import evaluate, mask_ious
from evaluation.metrics import mask_iou
from evaluation.writers import write_json_atomic

BAD = st.sampled_from([math.nan, math.inf, -math.inf])


@settings(max_examples=60, deadline=None)
@given(a=hnp.arrays(np.float32, (2, 3, 8, 8), elements=st.floats(-4, 4, width=32)),
       where=st.tuples(st.integers(0, 1), st.integers(0, 2), st.integers(0, 7), st.integers(0, 7)),
       bad=BAD, side=st.booleans())
def test_mask_ious_count_non_finite_logits_as_disagreement(a, where, bad, side) -> None:
    b = a.copy()
    (a if side else b)[where] = bad
    ious = mask_ious(a, b)
    assert ious[where[:2]] == 0.0
    clean = np.ones(ious.shape, bool)
    clean[where[:2]] = False
    assert np.all(ious[clean] == 1.0)  # identical finite masks still agree


def test_two_nan_masks_do_not_agree() -> None:
    nan = np.full((1, 4, 4), np.nan, np.float32)
    assert mask_ious(nan, nan).tolist() == [0.0]


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(["mask_iou_mean", "mask_iou_min", "embedding_rel_error", "low_res_logit_max_error"]),
       value=BAD)
def test_parity_thresholds_fail_on_non_finite_metrics(key, value) -> None:
    assert evaluate({key: 0.5}, {key: value})


@given(values=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=8))
def test_worst_error_never_hides_nan(values) -> None:
    from converters.parity import worst

    out = 0.0
    for v in values:
        out = worst(out, v)
    if all(math.isfinite(v) for v in values):
        assert out == max([0.0, *values])
    else:
        assert out == math.inf


def test_eval_mask_iou_refuses_nan_masks() -> None:
    m = np.zeros((4, 4), np.float32)
    m[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mask_iou(m, np.zeros((4, 4), bool))


JSONABLE = st.recursive(st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.text(max_size=3),
                        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
                        max_leaves=12)


@settings(max_examples=50, deadline=None)
@given(obj=JSONABLE)
def test_json_outputs_never_hold_bare_nan(tmp_path_factory, obj) -> None:
    path = tmp_path_factory.mktemp("j") / "out.json"
    write_json_atomic(path, {"value": obj})

    def refuse(name: str):  # noqa: ANN202
        raise AssertionError(f"bare {name} in {path.read_text()}")

    json.loads(path.read_text(), parse_constant=refuse)


# ---- models with a NaN weight -------------------------------------------------------------------


@pytest.fixture(scope="module")
def nan_model():
    from converters.api import load_model

    model, info = load_model("tinysam", None, 128, seed=0)
    with torch.no_grad():
        next(model.image_encoder.parameters()).view(-1)[0] = float("nan")
    return model, info


def test_nan_weight_fails_the_parity_gate(nan_model, tmp_path) -> None:
    """The issue's case: one NaN weight, every output NaN; the gate used to report mask IoU 1.0."""
    from converters import ConvertOptions
    from converters.api import ParityError, build_package

    model, info = nan_model
    with pytest.raises(ParityError, match="NaN/Inf"):
        build_package(model, info, "onnx", ConvertOptions(precision="fp32", out_dir=tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_reference_predictor_refuses_nan_outputs(nan_model, rel_image) -> None:
    from tinysam.predictor import SamPredictor

    predictor = SamPredictor(nan_model[0])
    predictor.set_image(rel_image)
    with pytest.raises(ValueError, match="NaN/Inf outputs"):
        predictor.predict(np.array([[10.0, 10.0]]), np.array([1]))


def test_runtime_refuses_a_zero_std_manifest(rel_package) -> None:
    """A normalization that divides by zero would make every output Inf/NaN (and every mask empty): the
    runtime refuses such a manifest when it loads it, naming the field. (Non-finite outputs of a model
    are refused too: see test_nan_checkpoint_with_allow_flag_still_cannot_pass_segment.)"""
    from mobile_runtime.manifest import load_manifest
    from mobile_runtime.session import Session

    manifest = load_manifest(rel_package)
    manifest["preprocess"] = {**manifest["preprocess"], "pixel_std": [0.0, 0.0, 0.0]}
    with pytest.raises(ValueError, match="pixel_std' must be three positive finite numbers"):
        Session(rel_package, manifest)


@pytest.fixture(scope="module")
def nan_checkpoint(tmp_path_factory):
    from safetensors.torch import save_file

    from converters.api import load_model

    model, _ = load_model("tinysam", None, 128, seed=0)
    sd = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    sd["mask_decoder.iou_token.weight"][0, 0] = float("nan")
    path = tmp_path_factory.mktemp("nanckpt") / "nan.safetensors"
    save_file(sd, str(path))
    return path


@pytest.mark.parametrize("command", ["segment", "convert"])
def test_nan_checkpoint_refused_unless_allowed(tmp_path, rel_image_path, nan_checkpoint, command) -> None:
    base = (["segment", "--image", str(rel_image_path), "--point", "5,5"] if command == "segment"
            else ["convert", "--target", "onnx", "--no-verify"])
    args = [*base, "--checkpoint", str(nan_checkpoint), "--image-size", "128", "--out", str(tmp_path / "out")]
    res = CliRunner().invoke(main, args)
    assert_one_line_failure(res)
    assert "NaN/Inf" in res.output and "mask_decoder.iou_token.weight" in res.output
    assert "--allow-nonfinite-weights" in res.output
    assert not (tmp_path / "out").exists()


def test_nan_checkpoint_with_allow_flag_still_cannot_pass_segment(tmp_path, rel_image_path, nan_checkpoint) -> None:
    """Explicitly allowed, the weights load; the NaN they produce is then refused, never written as masks."""
    res = CliRunner().invoke(main, ["segment", "--image", str(rel_image_path), "--point", "5,5",
                                    "--checkpoint", str(nan_checkpoint), "--image-size", "128",
                                    "--allow-nonfinite-weights", "--out", str(tmp_path / "out")])
    assert_one_line_failure(res)
    assert "NaN/Inf outputs" in res.output
    assert not (tmp_path / "out").exists()


def test_manifest_and_masks_json_are_strict_json(tmp_path, rel_package, rel_image_path) -> None:
    pkg = tmp_path / "pkg"
    shutil.copytree(rel_package, pkg)
    res = CliRunner().invoke(main, ["segment", "--image", str(rel_image_path), "--package", str(pkg),
                                    "--point", "5,5", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output

    def refuse(name: str):  # noqa: ANN202
        raise AssertionError(name)

    json.loads((tmp_path / "out" / "masks.json").read_text(), parse_constant=refuse)
