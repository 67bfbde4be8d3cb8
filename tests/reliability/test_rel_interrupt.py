"""An interrupted conversion (Ctrl-C, SIGTERM, an exception midway) leaves no package, no partial file
at the target path and no temporary directory (tests/converters/test_conv_package.py covers SIGTERM and
exceptions at the AtomicPackage level; here the real `convert` is interrupted while it writes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from converters import ConvertOptions, convert

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _default_sigint() -> None:
    """Child preexec: a shell that starts the tests in the background ignores SIGINT for them, and a
    Python started with SIGINT ignored never raises KeyboardInterrupt; give the child the default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class _Stop(RuntimeError):
    pass


@pytest.mark.parametrize("when", ["exporting encoder",
                                  pytest.param("exporting decoder", marks=pytest.mark.slow)])
def test_exception_midway_through_convert_leaves_nothing(tmp_path, when: str) -> None:
    """The real export starts (and for "exporting decoder", has written the encoder), then an error
    strikes before the package is done."""
    seen: list[str] = []

    def progress(msg: str) -> None:
        seen.append(msg)
        if when in msg:
            assert list(tmp_path.glob(".*partial-*/*")), "the temporary package directory should exist by now"
            if when == "exporting decoder":
                assert list(tmp_path.glob(".*partial-*/*/encoder.onnx"))
            raise _Stop("disk full (simulated)")

    with pytest.raises(_Stop):
        convert("tinysam", ConvertOptions(targets="onnx", out_dir=tmp_path, verify=False, image_size=128), progress)
    assert any(when in m for m in seen)
    assert list(tmp_path.iterdir()) == []


def _wait_for(pattern: str, root: Path, proc: subprocess.Popen, timeout: float = 90.0) -> list[Path]:
    t0 = time.time()
    while time.time() - t0 < timeout:
        found = list(root.glob(pattern))
        if found or proc.poll() is not None:
            return found
        time.sleep(0.05)
    return []


def test_sigint_during_cli_convert_leaves_nothing(tmp_path) -> None:
    """Ctrl-C while `cli.py convert` is exporting: exit 130, no package, no temporary directory."""
    out = tmp_path / "packages"
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "convert", "--model", "tinysam",
                             "--image-size", "128", "--target", "onnx", "--no-verify", "--out", str(out)],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    try:
        found = _wait_for(".*partial-*/*", out, proc)  # the export has begun
        assert found, f"conversion never started writing: {proc.communicate()[1][-2000:]}"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err
    assert list(out.iterdir()) == []


def test_sigint_inside_atomic_package_removes_temp_dir(tmp_path) -> None:
    """Ctrl-C (KeyboardInterrupt) between writing files and commit, without the CLI's handler."""
    script = textwrap.dedent(f"""
        import os, signal, time
        from pathlib import Path
        from converters.package import AtomicPackage
        with AtomicPackage(Path({str(tmp_path / 'pkg')!r}), zip_=True) as pkg:
            (pkg.dir / "encoder.onnx").write_bytes(b"x" * 100000)
            print(pkg.dir.parent, flush=True)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
            pkg.commit()
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=60,
                          preexec_fn=_default_sigint)
    assert proc.returncode in (130, -signal.SIGINT), proc.stderr
    assert "KeyboardInterrupt" in proc.stderr
    tmp_dir = Path(proc.stdout.strip())
    assert tmp_dir.parent == tmp_path and not tmp_dir.exists()
    assert list(tmp_path.iterdir()) == []
