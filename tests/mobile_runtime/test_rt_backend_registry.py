"""The runtime registry: one line per kind, every entry opens models, unknown kinds are refused."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from mobile_runtime.backends import ALIASES, KINDS, RUNTIMES, canonical_kind, open_model
from mobile_runtime.package_format import TARGETS


def test_every_kind_names_an_opener():
    assert KINDS == TARGETS and {"onnx", "tflite", "coreml"} <= set(KINDS)
    for kind, (module, function) in RUNTIMES.items():
        assert callable(getattr(importlib.import_module(module), function)), kind
    assert canonical_kind("litert") == "tflite" and ALIASES["litert"] in KINDS


@pytest.mark.parametrize("module", ["mobile_runtime.backends.litert_backend", "mobile_runtime.backends.onnx_backend",
                                    "mobile_runtime.backends.coreml_backend"])
def test_backend_modules_import_first_without_a_cycle(module):
    """Each backend module imports on its own in a fresh interpreter (no cycle through the package __init__)."""
    res = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-1000:]


def test_unknown_kind_refused_with_the_known_ones(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"unknown backend kind 'pte'; choose one of onnx, tflite, coreml"):
        open_model(tmp_path / "m.onnx", "pte")
