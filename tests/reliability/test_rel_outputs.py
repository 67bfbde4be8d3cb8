"""Outputs never destroy what was there: without --overwrite an existing output is never touched (even one
another run creates meanwhile), --overwrite builds new, swaps, then deletes old (a failed swap restores
the old), --out may not be the current directory, a parent of it or an input; interrupted writers leave
no temporary directory; outputs get the umask's permissions. Plus the bounds on user-controlled sizes
and hostile COCO ground truth."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import example, given, settings
from hypothesis import strategies as st
from rel_helpers import assert_one_line_failure

from calibration_data.atomic_dir import replaced_atomically
from cli import main

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _user_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "my-notes.txt").write_text("keep me")
    return path


def test_convert_never_touches_an_existing_package_or_zip(tmp_path) -> None:
    out = tmp_path / "packages"
    pkg = _user_dir(out / "tinysam-onnx-fp32")
    (out / "tinysam-onnx-fp32.zip").write_bytes(b"user zip")
    res = CliRunner().invoke(main, ["convert", "--image-size", "128", "--target", "onnx", "--no-verify", "--zip",
                                    "--out", str(out)])
    assert_one_line_failure(res)
    assert "--overwrite" in res.output
    assert (pkg / "my-notes.txt").read_text() == "keep me"
    assert (out / "tinysam-onnx-fp32.zip").read_bytes() == b"user zip"
    assert sorted(p.name for p in out.iterdir()) == ["tinysam-onnx-fp32", "tinysam-onnx-fp32.zip"]


@pytest.mark.parametrize("where", ["cwd", "parent", "input"])
def test_out_may_not_be_cwd_a_parent_or_an_input(tmp_path, monkeypatch, rel_image_path, rel_package, where) -> None:
    work = _user_dir(tmp_path / "work")
    monkeypatch.chdir(work)
    out = {"cwd": ".", "parent": "..", "input": str(rel_image_path.parent)}[where]
    for args in (["segment", "--image", str(rel_image_path), "--package", str(rel_package), "--point", "5,5",
                  "--overwrite", "--out", out],
                 ["convert", "--image-size", "128", "--target", "onnx", "--no-verify", "--overwrite",
                  "--calibration", str(rel_image_path.parent), "--out", out]):
        res = CliRunner().invoke(main, args)
        assert_one_line_failure(res)
    assert (work / "my-notes.txt").read_text() == "keep me"
    assert rel_image_path.is_file()


NAMES = st.lists(st.sampled_from(["..", ".", "a", "b", "work"]), min_size=0, max_size=5)


@settings(max_examples=80, deadline=None)
@given(parts=NAMES)
def test_check_out_path_refuses_every_spelling_of_cwd_and_its_parents(tmp_path_factory, parts) -> None:
    from calibration_data.atomic_dir import check_out_path

    base = tmp_path_factory.mktemp("cwd")
    cwd = base / "a" / "work"
    cwd.mkdir(parents=True)
    old = os.getcwd()
    os.chdir(cwd)
    try:
        out = Path(*parts) if parts else Path(".")
        resolved = out.resolve()
        dangerous = resolved == cwd.resolve() or resolved in cwd.resolve().parents
        if dangerous:
            with pytest.raises(ValueError, match="current directory"):
                check_out_path(out)
        else:
            check_out_path(out)
    finally:
        os.chdir(old)


def test_second_segment_to_the_same_out_refuses(tmp_path, rel_image_path, rel_package) -> None:
    out = tmp_path / "out"
    base = ["segment", "--image", str(rel_image_path), "--package", str(rel_package), "--out", str(out)]
    assert CliRunner().invoke(main, [*base, "--point", "5,5"]).exit_code == 0
    first = (out / "masks.json").read_bytes()
    res = CliRunner().invoke(main, [*base, "--point", "60,40"])
    assert_one_line_failure(res)
    assert (out / "masks.json").read_bytes() == first


def test_an_output_created_meanwhile_is_never_replaced(tmp_path) -> None:
    """Two runs race: the second to finish must fail, and the first's result must survive."""
    final = tmp_path / "out"
    with pytest.raises(ValueError, match="created by someone else"), replaced_atomically(final) as tmp:
        (tmp / "mine.txt").write_text("second run")
        _user_dir(final)  # the other run finished first
    assert (final / "my-notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_overwrite_failing_midway_keeps_the_old_output(tmp_path) -> None:
    final = _user_dir(tmp_path / "out")
    with pytest.raises(RuntimeError), replaced_atomically(final, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("half")
        raise RuntimeError("disk full")
    assert sorted(p.name for p in final.iterdir()) == ["my-notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_overwrite_swap_failure_restores_the_old_output(tmp_path, monkeypatch) -> None:
    final = _user_dir(tmp_path / "out")
    real = os.rename
    calls = []

    def flaky(src, dst):  # noqa: ANN001, ANN202
        calls.append((src, dst))
        if len(calls) == 2:  # old moved aside; now the new one fails to move in
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "rename", flaky)
    with pytest.raises(OSError), replaced_atomically(final, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert (final / "my-notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_overwrite_replaces_whole(tmp_path, rel_image_path, rel_package) -> None:
    out = _user_dir(tmp_path / "out")
    res = CliRunner().invoke(main, ["segment", "--image", str(rel_image_path), "--package", str(rel_package),
                                    "--point", "5,5", "--overwrite", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert not (out / "my-notes.txt").exists() and (out / "masks.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_outputs_get_umask_permissions(tmp_path, rel_image_path, rel_package) -> None:
    old = os.umask(0o022)
    try:
        out = tmp_path / "out"
        res = CliRunner().invoke(main, ["segment", "--image", str(rel_image_path), "--package", str(rel_package),
                                        "--point", "5,5", "--out", str(out)])
        assert res.exit_code == 0, res.output
        res = CliRunner().invoke(main, ["minisa", "--out", str(tmp_path / "data"), "--images", "1", "--size", "32"])
        assert res.exit_code == 0, res.output
    finally:
        os.umask(old)
    for d in (out, tmp_path / "data" / "train"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o755, d
    for f in [*out.iterdir(), *(tmp_path / "data" / "train").iterdir()]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f


def test_package_files_get_umask_permissions(tmp_path) -> None:
    """Exporters copy private temporary files into packages (coremltools: model.mlmodel 0600, weights/ 0700)."""
    from converters.package import AtomicPackage, hash_tree

    old = os.umask(0o022)
    try:
        with AtomicPackage(tmp_path / "pkg", zip_=True) as pkg:
            inner = pkg.dir / "encoder.mlpackage" / "weights"
            inner.mkdir(parents=True)
            (inner / "weight.bin").write_bytes(b"w")
            (inner / "weight.bin").chmod(0o600)
            inner.chmod(0o700)
            (pkg.dir / "manifest.json").write_text(json.dumps({"format_version": 1, "files": hash_tree(pkg.dir)}))
            pkg.commit()
    finally:
        os.umask(old)
    for p in [tmp_path / "pkg", *(tmp_path / "pkg").rglob("*"), tmp_path / "pkg.zip"]:
        assert stat.S_IMODE(p.stat().st_mode) == (0o755 if p.is_dir() else 0o644), p


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_atomic_output_leaves_nothing(tmp_path, sig) -> None:
    """The writer every output command uses (segment, eval, minisa, quantize, demo), interrupted midway."""
    import textwrap

    script = textwrap.dedent(f"""
        import os, signal, time
        from calibration_data.atomic_dir import replaced_atomically
        with replaced_atomically({str(tmp_path / 'out')!r}) as tmp:
            (tmp / "masks.json").write_text("{{}}")
            os.kill(os.getpid(), {int(sig)})
            time.sleep(5)
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=60,
                          preexec_fn=_default_sigint)
    assert proc.returncode in ((130, -signal.SIGINT, 1) if sig == signal.SIGINT else (143,)), proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_minisa_leaves_no_temporary_directory(tmp_path, sig) -> None:
    out = tmp_path / "data"
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "minisa", "--out", str(out), "--images", "5000",
                             "--size", "64"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    try:
        t0 = time.time()
        while time.time() - t0 < 90 and proc.poll() is None and not list(out.glob(".train.*.tmp/*.png")):
            time.sleep(0.05)
        assert list(out.glob(".train.*.tmp/*.png")), "minisa never started writing"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == (130 if sig == signal.SIGINT else 143), err[-2000:]
    assert "Traceback" not in err
    assert list(out.iterdir()) == []


# ---- bounded work ---------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["segment", "--everything", "--points-per-side", "5000"],
                                  ["convert", "--image-size", "100000", "--target", "onnx"]])
def test_sizes_have_bounds(tmp_path, rel_image_path, args) -> None:
    extra = ["--image", str(rel_image_path)] if args[0] == "segment" else []
    res = CliRunner().invoke(main, [*args, *extra, "--out", str(tmp_path / "o")])
    assert res.exit_code in (1, 2) and "Traceback" not in res.output
    assert "64" in res.output or "2048" in res.output, res.output
    assert not (tmp_path / "o").exists()


def _coco(tmp_path: Path, rel_image_path: Path, file_name: str, counts) -> list[str]:  # noqa: ANN001
    images = tmp_path / "images"
    images.mkdir()
    (images / "photo.png").write_bytes(rel_image_path.read_bytes())
    ann = {"images": [{"id": 1, "file_name": file_name, "height": 72, "width": 100}],
           "categories": [{"id": 1, "name": "thing"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 10,
                            "bbox": [30, 20, 40, 30], "segmentation": {"size": [72, 100], "counts": counts}}]}
    (tmp_path / "a.json").write_text(json.dumps(ann))
    (tmp_path / "d.json").write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [30, 20, 40, 30],
                                                  "score": 0.9}]))
    return ["eval", "coco", "--images", str(images), "--annotations", str(tmp_path / "a.json"),
            "--boxes", str(tmp_path / "d.json"), "--out", str(tmp_path / "r.json")]


@settings(max_examples=25, deadline=None, derandomize=True)
@example(counts="~~~~")  # pycocotools decodes this into a 72x100 mask summing to 227409
@example(counts="!")  # below '0': pycocotools would read a negative count as 4 billion pixels
@example(counts="o" * 40 + "1")  # one count 41 characters long
@example(counts=[0, 7199, 2])
@given(counts=st.lists(st.integers(-5, 10**7), min_size=1, max_size=6).filter(lambda c: sum(c) != 7200)
       | st.text(max_size=12))
def test_eval_coco_refuses_malformed_rle_quickly(tmp_path_factory, rel_image_path, rel_package, counts) -> None:
    tmp_path = tmp_path_factory.mktemp("coco")
    args = _coco(tmp_path, rel_image_path, "photo.png", counts)
    t0 = time.time()
    res = CliRunner().invoke(main, [*args, "--package", str(rel_package)])
    if isinstance(counts, str) and res.exit_code == 0:  # only a valid compressed RLE of a 72x100 mask passes
        from pycocotools import mask as mask_utils

        mask = mask_utils.decode({"size": [72, 100], "counts": counts.encode("ascii")})
        assert set(np.unique(mask)) <= {0, 1}
        assert mask_utils.encode(np.asfortranarray(mask))["counts"].decode() == counts
        return
    assert_one_line_failure(res)
    assert "RLE" in res.output
    assert time.time() - t0 < 30 and not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("name", ["../outside.png", "/etc/hostname", "sub/../../outside.png"])
def test_eval_coco_never_reads_outside_images(tmp_path, rel_image_path, rel_package, name) -> None:
    (tmp_path / "outside.png").write_bytes(rel_image_path.read_bytes())
    args = _coco(tmp_path, rel_image_path, name, [0, 7200])
    res = CliRunner().invoke(main, [*args, "--package", str(rel_package)])
    assert_one_line_failure(res)
    assert "leaves the --images directory" in res.output


def test_eval_refuses_to_replace_results_without_overwrite(tmp_path, rel_image_path, rel_package) -> None:
    args = _coco(tmp_path, rel_image_path, "photo.png", [0, 7200])
    (tmp_path / "r.json").write_text("earlier results")
    res = CliRunner().invoke(main, [*args, "--package", str(rel_package)])
    assert_one_line_failure(res)
    assert (tmp_path / "r.json").read_text() == "earlier results"
