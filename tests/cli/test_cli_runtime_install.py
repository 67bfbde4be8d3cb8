"""The runtime installs alone: a fresh virtualenv with only the base dependencies (no torch) runs
`tinysam-mobile segment --package` on an exported package."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PHOTO = ROOT / "calibration_data" / "photos" / "astronaut.jpg"


def runtime_pins() -> list[str]:
    """The base dependencies of pyproject.toml, each pinned as in requirements.txt."""
    base = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {line.split("==")[0].lower(): line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#")}
    names = [d.split("==")[0].lower() for d in base]
    assert "torch" not in names, "torch must not be a base dependency"
    missing = [n for n in names if n not in pins]
    assert not missing, f"base dependencies not pinned in requirements.txt: {missing}"
    assert [pins[n] for n in names] == list(base), "pyproject base pins differ from requirements.txt"
    return [pins[n] for n in names]


def test_base_dependencies_are_the_runtime_pins():
    assert {p.split("==")[0] for p in runtime_pins()} == {"numpy", "pillow", "onnxruntime", "ai-edge-litert", "click",
                                                                      "onnx"}


@pytest.mark.slow
def test_fresh_runtime_venv_segments_a_package(tinysam128_onnx_package, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py, pip = venv / "bin" / "python", [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, *runtime_pins()], check=True, timeout=900)
    subprocess.run([*pip, "--no-deps", str(ROOT)], check=True, timeout=600)
    probe = subprocess.run([str(py), "-c", "import importlib.util as u; print(u.find_spec('torch') is None)"],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "True", "torch is installed in the runtime-only environment"
    out = tmp_path / "seg"
    res = subprocess.run([str(venv / "bin" / "tinysam-mobile"), "segment", "--package",
                          str(tinysam128_onnx_package.path), "--image", str(PHOTO), "--point", "100,100",
                          "--out", str(out)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    masks = json.loads((out / "masks.json").read_text())
    assert (out / "overlay.png").is_file() and (out / "mask_000.png").is_file() and masks["annotations"]
