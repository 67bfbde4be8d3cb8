"""`cli.py segment` and `cli.py eval`: outputs a person can look at, and the error paths."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli import main

SMALL = ["--image-size", "128"]


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    rng = np.random.default_rng(0)
    img = rng.integers(40, 90, size=(72, 100, 3), dtype=np.uint8)
    img[20:50, 30:70] = (220, 180, 40)
    path = tmp_path_factory.mktemp("img") / "photo.png"
    Image.fromarray(img).save(path)
    return path


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_point_prompt_writes_masks_json_and_overlay(image_path, tmp_path) -> None:
    out = tmp_path / "out"
    res = run("segment", "--image", str(image_path), *SMALL, "--point", "50,35", "--point", "5,5,0",
              "--multimask", "--out", str(out))
    assert res.exit_code == 0, res.output
    from tinysam.defaults import find_default_weights

    shipped = find_default_weights("tinysam")  # says which weights it used, trained or not
    assert (f"shipped weights {shipped.path}" in res.output) if shipped else ("UNTRAINED" in res.output)
    files = sorted(p.name for p in out.iterdir())
    assert files == ["mask_000.png", "mask_001.png", "mask_002.png", "masks.json", "overlay.png"]
    doc = json.loads((out / "masks.json").read_text())
    assert doc["image"]["height"] == 72 and doc["image"]["width"] == 100
    ious = [a["predicted_iou"] for a in doc["annotations"]]
    assert ious == sorted(ious, reverse=True) and len(ious) == 3
    assert doc["annotations"][0]["point_labels"] == [1, 0]
    from evaluation.writers import decode_rle

    png = np.asarray(Image.open(out / "mask_000.png"))
    assert set(np.unique(png)) <= {0, 255} and png.shape == (72, 100)
    assert np.array_equal(decode_rle(doc["annotations"][0]["segmentation"]), png == 255)
    overlay = np.asarray(Image.open(out / "overlay.png"))
    original = np.asarray(Image.open(image_path))
    assert overlay.shape == original.shape
    assert np.any(overlay != original)


def test_box_prompt_and_dense_everything(image_path, tmp_path) -> None:
    res = run("segment", "--image", str(image_path), *SMALL, "--box", "28,18,72,52", "--out", str(tmp_path / "b"))
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "b" / "masks.json").read_text())
    assert len(doc["annotations"]) == 1 and doc["annotations"][0]["box"] == [28, 18, 72, 52]
    res = run("segment", "--image", str(image_path), *SMALL, "--everything", "--dense", "--points-per-side", "4",
              "--out", str(tmp_path / "e"))
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "e" / "masks.json").read_text())
    assert isinstance(doc["annotations"], list)
    assert (tmp_path / "e" / "overlay.png").is_file()


@pytest.mark.parametrize("args", [
    ["--point", "1,x"], ["--point", "1,2,5"], ["--point", "1"], ["--box", "1,2,3"], ["--box", "5,5,2,9"],
    [], ["--everything", "--point", "3,3"], ["--dense", "--point", "3,3"],
])
def test_usage_errors_exit_2(image_path, tmp_path, args) -> None:
    out = tmp_path / "out"
    res = run("segment", "--image", str(image_path), *SMALL, *args, "--out", str(out))
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and not out.exists()


def test_runtime_errors_exit_1_one_line_and_leave_nothing(image_path, tmp_path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    garbage_ckpt = tmp_path / "w.pt"
    garbage_ckpt.write_bytes(b"garbage")
    cases = [
        ["--image", str(bad), "--point", "3,3"],
        ["--image", str(tmp_path / "missing.png"), "--point", "3,3"],
        ["--image", str(image_path), "--point", "500,3"],
        ["--image", str(image_path), "--checkpoint", str(garbage_ckpt), "--point", "3,3"],
        ["--image", str(image_path), "--package", str(tmp_path / "nopkg"), "--point", "3,3"],
    ]
    for args in cases:
        out = tmp_path / "out"
        res = run("segment", *args, "--out", str(out))
        assert res.exit_code == 1, (args, res.output)
        errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "Traceback" not in res.output, res.output
        assert not out.exists() and not list(tmp_path.glob(".out*")), args


def test_non_empty_output_dir_needs_overwrite(image_path, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    res = run("segment", "--image", str(image_path), *SMALL, "--point", "3,3", "--out", str(out))
    assert res.exit_code == 1 and "--overwrite" in res.output
    assert (out / "keep.txt").exists()
    res = run("segment", "--image", str(image_path), *SMALL, "--point", "3,3", "--out", str(out), "--overwrite")
    assert res.exit_code == 0 and not (out / "keep.txt").exists() and (out / "overlay.png").exists()


def test_eval_commands_end_to_end(tmp_path) -> None:
    rng = np.random.default_rng(1)
    images = tmp_path / "images"
    images.mkdir()
    img = rng.integers(40, 90, size=(64, 80, 3), dtype=np.uint8)
    img[10:40, 20:60] = 230
    Image.fromarray(img).save(images / "a.png")
    from evaluation.writers import encode_rle

    m = np.zeros((64, 80), bool)
    m[10:40, 20:60] = True
    (tmp_path / "gt.json").write_text(json.dumps({
        "images": [{"id": 7, "file_name": "a.png", "height": 64, "width": 80}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "segmentation": encode_rle(m),
                         "area": float(m.sum()), "bbox": [20, 10, 40, 30], "iscrowd": 0}]}))
    (tmp_path / "dets.json").write_text(json.dumps([{"image_id": 7, "category_id": 1, "bbox": [19, 9, 42, 31],
                                                     "score": 0.9}]))
    common = ["--images", str(images), "--annotations", str(tmp_path / "gt.json"), *SMALL]
    res = run("eval", "coco", *common, "--boxes", str(tmp_path / "dets.json"), "--out", str(tmp_path / "r.json"))
    assert res.exit_code == 0, res.output
    stats = json.loads((tmp_path / "r.json").read_text())["stats"]
    assert set(stats) >= {"AP", "AP50", "AP75", "APs", "APm", "APl"} and 0 <= stats["AP"] <= 1
    assert "AP50" in res.output
    res = run("eval", "points", *common, "--max-clicks", "2", "--out", str(tmp_path / "p.json"))
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["instances"] == 1 and set(doc["miou"]) == {"1", "2"}
    res = run("eval", "coco", *common, "--boxes", str(tmp_path / "missing.json"), "--out", str(tmp_path / "x.json"))
    assert res.exit_code == 1 and "detections file not found" in res.output and not (tmp_path / "x.json").exists()
