"""No file the project reads can run code: a pickle whose unpickling creates a marker file is planted in
every kind of file the project opens (checkpoints .pth/.pt/.safetensors, images, package models and
manifest, quantized-model directories, Q-TinySAM files, the teacher cache, a training run's files), and
the marker never appears. Images open only the documented formats: a PostScript file never reaches
Ghostscript (a fake `gs` on PATH would create a marker)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from rel_helpers import Exploit, assert_one_line_failure, payload, zip_payload

from cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_payload_is_real(tmp_path) -> None:
    """The payload does run under a plain unpickler and under torch.load(weights_only=False)."""
    pickle.loads(payload(tmp_path / "a"))  # noqa: S301 - deliberate, on our own bytes
    torch.load(zip_payload(tmp_path / "b.pt", tmp_path / "b"), weights_only=False)
    assert (tmp_path / "a").exists() and (tmp_path / "b").exists()


# ---- through the command line: one-line error, marker absent ---------------------------------------


def _cli_checkpoint(tmp_path: Path, marker: Path, suffix: str) -> list[str]:
    path = tmp_path / f"evil{suffix}"
    if suffix == ".pth":
        zip_payload(path, marker)
    else:
        path.write_bytes(payload(marker))  # legacy raw pickle / pickle bytes posing as safetensors
    return ["--checkpoint", str(path), "--image-size", "128"]


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".safetensors"])
def test_checkpoint_payload_through_segment(tmp_path, rel_image_path, suffix) -> None:
    marker = tmp_path / "pwned"
    args = _cli_checkpoint(tmp_path, marker, suffix)
    res = CliRunner().invoke(main, ["segment", "--image", str(rel_image_path), *args, "--point", "5,5",
                                    "--out", str(tmp_path / "out")])
    assert_one_line_failure(res)
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_checkpoint_payload_through_convert(tmp_path) -> None:
    marker = tmp_path / "pwned"
    args = _cli_checkpoint(tmp_path, marker, ".pth")
    res = CliRunner().invoke(main, ["convert", *args, "--target", "onnx", "--no-verify", "--out", str(tmp_path / "o")])
    assert_one_line_failure(res)
    assert not marker.exists() and not (tmp_path / "o").exists()


def test_image_payload_through_segment(tmp_path, rel_package) -> None:
    marker = tmp_path / "pwned"
    img = tmp_path / "photo.png"
    img.write_bytes(payload(marker))
    res = CliRunner().invoke(main, ["segment", "--image", str(img), "--package", str(rel_package), "--point", "5,5",
                                    "--out", str(tmp_path / "out")])
    assert_one_line_failure(res)
    assert not marker.exists()


def _rehash(pkg: Path, name: str) -> None:
    """Make the manifest (and its digest, if any) agree with the edited file, as an attacker would."""
    from converters.package import sha256_file

    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest["files"][name] = sha256_file(pkg / name)
    if manifest["models"]["encoder"].get("file") == name:
        manifest["models"]["encoder"].pop("sha256", None)
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    digest = pkg / "manifest.sha256"
    if digest.exists():
        digest.write_text(f"{sha256_file(pkg / 'manifest.json')}  manifest.json\n")


@pytest.mark.parametrize("planted", ["encoder.onnx", "manifest.json"])
def test_package_payload_through_segment_and_verify(tmp_path, rel_package, rel_image_path, planted) -> None:
    marker = tmp_path / "pwned"
    pkg = tmp_path / "pkg"
    shutil.copytree(rel_package, pkg)
    (pkg / planted).write_bytes(payload(marker))
    if planted != "manifest.json":
        _rehash(pkg, planted)
    commands = [["segment", "--image", str(rel_image_path), "--package", str(pkg), "--point", "5,5",
                 "--out", str(tmp_path / "out")], ["verify", str(pkg)]]
    if planted == "manifest.json":  # `info` reads only the manifest
        commands.append(["info", str(pkg)])
    for args in commands:
        res = CliRunner().invoke(main, args)
        assert_one_line_failure(res)
    assert not marker.exists()


# ---- library readers ----------------------------------------------------------------------------


def test_quantized_dir_payload(tmp_path) -> None:
    from tinysam.quant.export_format import JSON_FILE, TENSORS_FILE, load_quantized

    marker = tmp_path / "pwned"
    q = tmp_path / "q"
    q.mkdir()
    (q / JSON_FILE).write_text(json.dumps({"format": "tinysam-quant", "model": "tinysam", "image_size": 128,
                                           "bits": "w8a8", "layers": {}}))
    (q / TENSORS_FILE).write_bytes(payload(marker))
    with pytest.raises(Exception):  # noqa: B017, PT011 - any refusal; what matters is the marker
        load_quantized(q)
    assert not marker.exists()


def test_qtinysam_file_payload(tmp_path) -> None:
    from tinysam.quant.qtinysam_reader import read_qtinysam

    marker = tmp_path / "pwned"
    with pytest.raises(pickle.UnpicklingError):
        read_qtinysam(zip_payload(tmp_path / "tinysam_w8a8.pth", marker))
    assert not marker.exists()


def test_teacher_cache_shard_payload(tmp_path) -> None:
    from tinysam.distill.teacher_cache import TeacherCache

    marker = tmp_path / "pwned"
    cache = TeacherCache(tmp_path, "sam_vit_h", "0" * 64, 128)
    cache.dir.mkdir(parents=True)
    np.save(cache.dir / "shard_0000.npy", np.array([Exploit(marker)], dtype=object), allow_pickle=True)
    cache.index_path.write_text(json.dumps({"checkpoint_sha256": "0" * 64, "image_size": 128,
                                            "entries": {"img": ["shard_0000.npy", 0]}}))
    with pytest.raises(ValueError):  # noqa: PT011
        cache.get("img")
    assert not marker.exists()


def test_run_student_file_payload(tmp_path) -> None:
    from tinysam.distill.export import student_state

    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    zip_payload(run / "student.pt", marker)  # runs write student.safetensors; a .pt file is never opened
    with pytest.raises(ValueError):  # noqa: PT011
        student_state(run)
    assert not marker.exists()


def test_run_resume_state_payload(tmp_path) -> None:
    from tinysam.distill.export import student_state

    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    zip_payload(run / "last.pt", marker)
    with pytest.raises(Exception):  # noqa: B017, PT011
        student_state(run)
    assert not marker.exists()


# ---- images: only the documented formats, never Ghostscript ---------------------------------------------


EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\n"
       b"showpage\n%%EOF\n")


@pytest.fixture()
def fake_gs(tmp_path) -> tuple[dict, Path]:
    """PATH with a `gs` that creates a marker when anything runs it."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    marker = tmp_path / "ghostscript-ran"
    gs = bindir / "gs"
    gs.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    gs.chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(ROOT)}
    return env, marker


def test_fake_ghostscript_is_real(tmp_path, fake_gs) -> None:
    """Plain Pillow does hand this file to `gs` (so the refusals below can fail)."""
    env, marker = fake_gs
    (tmp_path / "x.eps").write_bytes(EPS)
    code = f"from PIL import Image\ntry:\n Image.open({str(tmp_path / 'x.eps')!r}).load()\nexcept Exception: pass"
    subprocess.run([sys.executable, "-c", code], env=env, timeout=60, check=True)
    assert marker.exists()


@pytest.mark.parametrize("name", ["photo.png", "drawing.eps"])
def test_postscript_never_reaches_ghostscript(tmp_path, fake_gs, rel_package, name) -> None:
    env, marker = fake_gs
    img = tmp_path / name
    img.write_bytes(EPS)
    code = ("from calibration_data.loaders import load_image\nfrom evaluation.images import load_rgb\n"
            f"for f in (load_image, load_rgb):\n try:\n  f({str(img)!r})\n except ValueError as e:\n  print(e)")
    lib = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    cli = subprocess.run([sys.executable, str(ROOT / "cli.py"), "segment", "--image", str(img), "--package",
                          str(rel_package), "--point", "1,1", "--out", str(tmp_path / "out")],
                         env=env, capture_output=True, text=True, timeout=120)
    assert not marker.exists(), "Ghostscript was run on an untrusted file"
    assert lib.stdout.count("not a recognised image file") == 2, lib.stdout + lib.stderr
    assert cli.returncode == 1 and "Traceback" not in cli.stderr, cli.stderr
    assert "not a recognised image file" in cli.stderr
