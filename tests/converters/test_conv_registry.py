"""The backend registry: every target is one registered backend; unknown targets are refused with the
known list everywhere (convert, verify, runtime); backends never import each other."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import converters
from converters.backends import ALIASES, TARGETS, Backend, Capabilities, get_backend
from converters.backends.base import DECODER_PACKAGING, LAYER_KINDS
from converters.spec import ExportSpec, parse_targets
from mobile_runtime import package_format as fmt
from mobile_runtime.backends import KINDS, open_model

ROOT = Path(__file__).resolve().parents[2]
BACKENDS_DIR = ROOT / "converters" / "backends"
KNOWN = "choose one of: " + ", ".join(TARGETS)


def test_every_target_is_a_backend_with_typed_capabilities():
    assert {"onnx", "tflite", "coreml"} <= set(TARGETS)
    for name in TARGETS:
        b = get_backend(name)
        assert isinstance(b, Backend) and b.name == name
        caps = b.capabilities
        assert isinstance(caps, Capabilities)
        assert caps.decoder_packaging in DECODER_PACKAGING
        assert set(caps.precisions) <= set(fmt.PRECISIONS)
        assert set(caps.int8_weight_layers) <= set(LAYER_KINDS) and set(caps.int8_activation_layers) <= set(LAYER_KINDS)
        assert b.runtime_kind in KINDS, f"{name}: no runtime opens its packages"
        assert name in fmt.TARGETS, f"{name}: not a target the package format knows"
        assert set(b.kind_ops) >= {"normalization", "softmax"}
        assert callable(b.export)


def test_alias_and_public_api():
    assert ALIASES["litert"] == "tflite" and get_backend("litert") is get_backend("tflite")
    assert parse_targets("litert,tflite,onnx") == ["tflite", "onnx"]
    assert ExportSpec.__name__ and converters.get_backend is get_backend and converters.TARGETS == TARGETS
    for name in ("convert", "verify_package", "ParityError", "ConvertOptions"):
        assert hasattr(converters, name), name


def test_decoder_variants_follow_the_packaging():
    assert get_backend("onnx").decoder_variants((1, 16)) == {
        1: {"file": "decoder_k1.onnx", "signature": None}, 16: {"file": "decoder_k16.onnx", "signature": None}}
    assert get_backend("tflite").decoder_variants((1,)) == {1: {"file": "decoder.tflite", "signature": "k1"}}
    assert get_backend("coreml").decoder_variants((16,)) == {
        16: {"file": "decoder.mlpackage", "signature": "decoder_k16"}}


@pytest.mark.parametrize("call", [
    lambda: get_backend("tensorrt"),
    lambda: parse_targets("onnx,tensorrt"),
    lambda: converters.convert("tinysam", converters.ConvertOptions(targets="tensorrt", out_dir="/nonexistent-out")),
    lambda: converters.ConvertOptions(targets=("onnx", "tensorrt")).check(),
])
def test_unknown_target_refused_with_known_list(call):
    with pytest.raises(ValueError, match="unknown target 'tensorrt'; " + KNOWN):
        call()


def _fake_package(tmp_path: Path, target: str) -> Path:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "encoder.bin").write_bytes(b"x")
    manifest = {"format_version": 1, "target": target, "precision": "fp32", "model": {"name": "tinysam"},
                "files": {}, "models": {}}
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    return pkg


def test_verify_refuses_unknown_target(tmp_path):
    with pytest.raises(ValueError, match="unknown target 'tensorrt'; " + KNOWN):
        converters.verify_package(_fake_package(tmp_path, "tensorrt"))


def test_runtime_refuses_unknown_kind(tmp_path):
    path = tmp_path / "m.bin"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown backend kind 'tensorrt'; choose one of " + ", ".join(KINDS)):
        open_model(path, "tensorrt")


def _imports(path: Path) -> set[str]:
    mods: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import (write converters.backends.<name>... in full)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(
                "converters.backends."):
            mods.add(node.value)  # lazily imported modules (run_lazily)
    return mods


def test_backends_never_import_each_other():
    folders = [p for p in BACKENDS_DIR.iterdir() if p.is_dir() and (p / "__init__.py").is_file()]
    assert {p.name for p in folders} >= {"onnx", "litert", "coreml"}
    for folder in folders:
        own = f"converters.backends.{folder.name}"
        others = [f"converters.backends.{p.name}" for p in folders if p != folder]
        for path in folder.rglob("*.py"):
            for mod in _imports(path):
                bad = [o for o in others if mod == o or mod.startswith(o + ".")]
                assert not bad, f"{path.relative_to(ROOT)} imports {mod} (backends never import each other; " \
                                f"move what they share to a converters module named for what it does)"
                assert not mod.startswith("converters.backends.") or mod.startswith(own) or mod in (
                    "converters.backends.base", "converters.backends.registry"), f"{path}: {mod}"
