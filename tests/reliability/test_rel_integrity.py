"""Everything a package's behaviour depends on is verified: the manifest itself (its digest), the
package run the way the runtime runs it (so edited constants fail even with a recomputed digest), every
path inside model files (CoreML weight references, ONNX external data), and checkpoint zip CRCs."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from rel_helpers import assert_one_line_failure

from cli import main
from converters.package import sha256_file


def _copy(pkg: Path, tmp_path: Path) -> Path:
    out = tmp_path / pkg.name
    shutil.copytree(pkg, out)
    return out


def _edit(pkg: Path, fn, redigest: bool) -> None:
    manifest = json.loads((pkg / "manifest.json").read_text())
    fn(manifest)
    (pkg / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if redigest:  # what an attacker (or a careless editor) would do
        (pkg / "manifest.sha256").write_text(f"{sha256_file(pkg / 'manifest.json')}  manifest.json\n")


def _verify(pkg: Path):  # noqa: ANN202
    return CliRunner().invoke(main, ["verify", str(pkg)])


def test_fresh_package_has_a_digest_and_verifies(tinysam128_onnx_package) -> None:
    pkg = tinysam128_onnx_package.path
    assert (pkg / "manifest.sha256").read_text().split()[0] == sha256_file(pkg / "manifest.json")
    res = _verify(pkg)
    assert res.exit_code == 0, res.output
    assert "runtime_mask_iou_mean" in res.output


EDITS = {
    "pixel_mean": lambda m: m["preprocess"].update(pixel_mean=[0.0, 0.0, 0.0]),
    "mask_threshold": lambda m: m["postprocess"].update(mask_threshold=1e6),
}


@pytest.mark.parametrize("field", list(EDITS))
def test_edited_manifest_fails_the_digest(tinysam128_onnx_package, tmp_path, field) -> None:
    from mobile_runtime import PackageError, load_package

    pkg = _copy(tinysam128_onnx_package.path, tmp_path)
    _edit(pkg, EDITS[field], redigest=False)
    res = _verify(pkg)
    assert_one_line_failure(res)
    assert "manifest.sha256" in res.output
    with pytest.raises(PackageError, match="manifest.sha256"):
        load_package(pkg)


@pytest.mark.parametrize("field", list(EDITS))
def test_edited_constants_fail_verify_even_with_a_new_digest(tinysam128_onnx_package, tmp_path, field) -> None:
    pkg = _copy(tinysam128_onnx_package.path, tmp_path)
    _edit(pkg, EDITS[field], redigest=True)
    res = _verify(pkg)
    assert_one_line_failure(res)
    assert "runtime_mask_iou_mean" in res.output


def test_missing_digest_fails_verify(tinysam128_onnx_package, tmp_path) -> None:
    pkg = _copy(tinysam128_onnx_package.path, tmp_path)
    (pkg / "manifest.sha256").unlink()
    res = _verify(pkg)
    assert_one_line_failure(res)
    assert "no manifest.sha256" in res.output


@pytest.mark.parametrize("bad", [float("nan"), 0.0, "0.5"])
def test_runtime_validates_loaded_constants(rel_package, tmp_path, bad) -> None:
    """Without the digest (older packages), load-time validation must still refuse nonsense constants,
    naming the field in words."""
    from mobile_runtime import PackageError, load_package

    pkg = _copy(rel_package, tmp_path)
    _edit(pkg, lambda m: m["preprocess"].update(pixel_std=[bad, 1.0, 1.0]), redigest=False)
    with pytest.raises(PackageError, match="standard deviation|pixel_std"):
        load_package(pkg)


def test_runtime_validates_mask_threshold(rel_package, tmp_path) -> None:
    from mobile_runtime import PackageError, load_package

    pkg = _copy(rel_package, tmp_path)
    _edit(pkg, lambda m: m["postprocess"].update(mask_threshold=float("inf")), redigest=False)
    with pytest.raises(PackageError, match="threshold"):
        load_package(pkg)


def test_malformed_manifest_errors_name_the_field_in_words(rel_package, tmp_path) -> None:
    from mobile_runtime import PackageError, load_package

    pkg = _copy(rel_package, tmp_path)
    _edit(pkg, lambda m: m["preprocess"].pop("pixel_mean"), redigest=False)
    with pytest.raises(PackageError) as info:
        load_package(pkg)
    assert "mean" in str(info.value) and str(info.value) != "'pixel_mean'"


# ---- paths inside model files -------------------------------------------------------------------


def _rehash_all(pkg: Path) -> None:
    from converters.package import hash_tree

    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest["files"] = hash_tree(pkg)
    for m in manifest["models"].values():
        m.pop("sha256", None)
        for v in m.get("variants", {}).values():
            v.pop("sha256", None)
    (pkg / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if (pkg / "manifest.sha256").exists():
        (pkg / "manifest.sha256").write_text(f"{sha256_file(pkg / 'manifest.json')}  manifest.json\n")


def test_onnx_external_data_outside_the_package_is_refused(tinysam128_onnx_package, tmp_path) -> None:
    import onnx

    from mobile_runtime import PackageError, load_package

    pkg = _copy(tinysam128_onnx_package.path, tmp_path)
    model = onnx.load(str(pkg / "decoder_k1.onnx"), load_external_data=False)
    moved = 0
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value, moved = "../outside.weights", moved + 1
    assert moved, "the fixture package keeps decoder weights as external data"
    shutil.copy(pkg / "decoder.weights", tmp_path / "outside.weights")
    (pkg / "decoder_k1.onnx").write_bytes(model.SerializeToString())
    _rehash_all(pkg)
    with pytest.raises(PackageError, match="external data.*leaves the package"):
        load_package(pkg)
    res = _verify(pkg)
    assert_one_line_failure(res)


@pytest.fixture(scope="module")
def tiny_mlpackage(tmp_path_factory) -> Path:
    """A one-layer CoreML ML program whose weights live in a blob file."""
    import coremltools as ct

    m = torch.nn.Sequential(torch.nn.Linear(64, 64)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ml = ct.convert(torch.jit.trace(m, torch.randn(1, 64)), inputs=[ct.TensorType(name="x", shape=(1, 64))],
                        outputs=[ct.TensorType(name="y")], convert_to="mlprogram",
                        minimum_deployment_target=ct.target.iOS16)
    out = tmp_path_factory.mktemp("tinyml") / "encoder.mlpackage"
    ml.save(str(out))
    return out


def _coreml_package(tiny: Path, root: Path) -> Path:
    """A package directory whose encoder and decoder are `tiny` (enough for the path checks)."""
    from converters.package import hash_tree
    from mobile_runtime.integrity import digest_line

    pkg = root / "pkg"
    pkg.mkdir()
    shutil.copytree(tiny, pkg / "encoder.mlpackage")
    manifest = {"format_version": 1, "model": {"name": "tiny"}, "target": "coreml",
                "preprocess": {"image_size": 64, "pixel_mean": [0, 0, 0], "pixel_std": [1, 1, 1]},
                "postprocess": {}, "prompts": {},
                "models": {"encoder": {"file": "encoder.mlpackage"},
                           "decoder": {"file": "encoder.mlpackage", "variants": {"1": {}}}},
                "files": hash_tree(pkg)}
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    (pkg / "manifest.sha256").write_text(digest_line(pkg))
    return pkg


def _set_blob_names(message, name: str) -> None:  # noqa: ANN001
    for field, value in message.ListFields():
        if field.name == "blobFileValue":
            value.fileName = name
        elif field.type == field.TYPE_MESSAGE:
            repeated = getattr(field, "is_repeated", None)
            repeated = field.label == field.LABEL_REPEATED if repeated is None else repeated
            if not repeated:
                items = [value]
            else:
                items = value.values() if hasattr(value, "values") and callable(value.values) else value
            for item in items:
                if hasattr(item, "ListFields"):
                    _set_blob_names(item, name)


def _point_weights_outside(pkg: Path, outside: Path) -> None:
    from mobile_runtime.backends.coreml_emulator.proto import model_pb2

    spec_path = pkg / "encoder.mlpackage" / "Data" / "com.apple.CoreML" / "model.mlmodel"
    spec = model_pb2().Model()
    spec.ParseFromString(spec_path.read_bytes())
    outside.mkdir()
    shutil.copy(spec_path.parent / "weights" / "weight.bin", outside / "weight.bin")
    rel = "@model_path/" + "/".join([".."] * 4) + f"/{outside.name}/weight.bin"
    _set_blob_names(spec, rel)
    spec_path.write_bytes(spec.SerializeToString())
    (spec_path.parent / "weights" / "weight.bin").unlink()


def test_coreml_weights_outside_the_package_are_refused(tiny_mlpackage, tmp_path) -> None:
    from mobile_runtime import PackageError
    from mobile_runtime.backends.coreml_emulator import load_mlpackage
    from mobile_runtime.manifest import load_manifest

    pkg = _coreml_package(tiny_mlpackage, tmp_path)
    load_manifest(pkg)  # the untouched package is fine
    _point_weights_outside(pkg, tmp_path / "elsewhere")
    _rehash_all(pkg)
    with pytest.raises(PackageError, match="weight reference.*leaves the package"):
        load_manifest(pkg)
    with pytest.raises(ValueError, match="outside the .mlpackage"):
        import numpy as np

        load_mlpackage(pkg / "encoder.mlpackage").predict({"x": np.ones((1, 64), np.float32)})
    res = _verify(pkg)
    assert_one_line_failure(res)
    assert "leaves the package" in res.output


def test_coreml_item_path_outside_the_package_is_refused(tiny_mlpackage, tmp_path) -> None:
    from mobile_runtime import PackageError
    from mobile_runtime.manifest import load_manifest

    pkg = _coreml_package(tiny_mlpackage, tmp_path)
    mani = pkg / "encoder.mlpackage" / "Manifest.json"
    info = json.loads(mani.read_text())
    for entry in info["itemInfoEntries"].values():
        entry["path"] = "../../../model.mlmodel"
    mani.write_text(json.dumps(info))
    _rehash_all(pkg)
    with pytest.raises(PackageError, match="item path.*leaves the package"):
        load_manifest(pkg)


# ---- checkpoints: corrupt zip records ---------------------------------------------------------------


def _corrupt_checkpoint(path: Path) -> tuple[Path, torch.Tensor]:
    values = torch.arange(256, dtype=torch.float32) + 1000.0
    torch.save({"w": values}, path)
    raw = bytearray(path.read_bytes())
    at = bytes(raw).find(values.numpy().tobytes())
    assert at > 0
    raw[at + 5] ^= 0x40  # one bit of one stored number
    path.write_bytes(bytes(raw))
    return path, values


def test_crc_mismatch_is_refused_not_loaded_with_other_numbers(tmp_path) -> None:
    from tinysam.checkpoint import CheckpointError, read_state_dict

    path, values = _corrupt_checkpoint(tmp_path / "bitrot.pth")
    loaded = torch.load(path, weights_only=True)["w"]  # torch's reader does not check CRCs
    assert not torch.equal(loaded, values)
    with pytest.raises(CheckpointError, match="CRC"):
        read_state_dict(path)


def test_crc_mismatch_through_cli(tmp_path, rel_image_path) -> None:
    path, _ = _corrupt_checkpoint(tmp_path / "bitrot.pth")
    res = CliRunner().invoke(main, ["segment", "--image", str(rel_image_path), "--checkpoint", str(path),
                                    "--image-size", "128", "--point", "5,5", "--out", str(tmp_path / "o")])
    assert_one_line_failure(res)
    assert "CRC" in res.output


@pytest.mark.parametrize("damage", ["truncate", "append", "header"])
def test_safetensors_header_and_sizes_are_validated(tmp_path, damage) -> None:
    from safetensors.torch import save_file

    from tinysam.checkpoint import CheckpointError, read_state_dict

    path = tmp_path / "w.safetensors"
    save_file({"w": torch.arange(64, dtype=torch.float32)}, str(path))
    raw = path.read_bytes()
    raw = {"truncate": raw[:-7], "append": raw + b"\0" * 16,
           "header": raw[:8] + raw[8:].replace(b'"data_offsets":[0,256]', b'"data_offsets":[0,999]')}[damage]
    path.write_bytes(raw)
    with pytest.raises(CheckpointError):
        read_state_dict(path)


def test_every_runtime_kind_has_a_path_check() -> None:
    """A new target cannot slip past the in-model path checks: each registered kind has its own entry."""
    from mobile_runtime.backends.registry import RUNTIMES
    from mobile_runtime.model_paths import PATH_CHECKS

    assert set(PATH_CHECKS) == set(RUNTIMES)
