"""IoU head calibration: only the head changes, the masks stay, the report says what it measured."""

from __future__ import annotations

import json

from click.testing import CliRunner
from safetensors.torch import load_file

import cli
from calibration_data.minisa import generate_minisa
from tinysam.defaults import find_default_weights


def test_calibration_refits_only_the_iou_head(tmp_path):
    weights = find_default_weights("tinysam", image_size=128)
    data = generate_minisa(tmp_path / "data", 3, image_size=128, seed=5, progress=False)
    out = tmp_path / "cal.safetensors"
    res = CliRunner().invoke(cli.main, ["calibrate-iou-head", "--checkpoint", str(weights.path), "--image-size", "128",
                                        "--data", str(data), "--points-per-side", "8", "--epochs", "50",
                                        "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "rank correlation" in res.output
    before, after = load_file(str(weights.path)), load_file(str(out))
    assert before.keys() == after.keys()
    head = [k for k in before if k.startswith("mask_decoder.iou_prediction_head.")]
    assert head and any(not before[k].equal(after[k]) for k in head)
    assert all(before[k].equal(after[k]) for k in before if k not in head)
    report = json.loads(out.with_suffix(".json").read_text())["iou_head_calibration"]
    assert report["pairs"] == 3 * 64 and report["holdout_pairs"] + report["train_pairs"] == report["pairs"]
    # the kept epoch is the best on held-out clicks, so the held-out error cannot have grown
    assert report["after"]["mae"] <= report["before"]["mae"] + 0.05
    # a second run refuses to overwrite, in one line
    again = CliRunner().invoke(cli.main, ["calibrate-iou-head", "--checkpoint", str(weights.path), "--data", str(data),
                                          "--out", str(out)])
    assert again.exit_code != 0 and "exists" in again.output and "Traceback" not in again.output


def test_calibration_refuses_a_folder_without_scenes(tmp_path):
    weights = find_default_weights("tinysam", image_size=128)
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(cli.main, ["calibrate-iou-head", "--checkpoint", str(weights.path), "--data",
                                        str(tmp_path / "empty"), "--out", str(tmp_path / "x.safetensors")])
    assert res.exit_code != 0 and "no SA-1B (image, json) pairs" in res.output
    assert not (tmp_path / "x.safetensors").exists()
