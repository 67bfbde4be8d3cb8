"""`verify_package(path)`: re-check a package's hashes and re-run parity against the reference.

`path` is a package directory or its `.zip`; a zip is extracted into a temporary directory with
the runtime's safe extraction (no absolute or escaping paths, no symlinks, no zip bombs).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

from converters.backends import canonical_target
from converters.package import MANIFEST, check_hashes

# Minimum mean mask IoU of the package run through the runtime (its own pre/post-processing) against
# the reference predictor, per precision.
RUNTIME_IOU = {"fp32": 0.98, "fp16": 0.97, "int8": 0.9, "mixed": 0.9, "w8a8": 0.85}


@contextlib.contextmanager
def opened_package(path: str | Path) -> Iterator[Path]:
    """Yield the package directory of `path` (a directory, or a `.zip` extracted safely and removed after)."""
    from mobile_runtime.manifest import is_zip, package_root

    path = Path(path)
    if not path.exists():
        raise ValueError(f"package {path} does not exist")
    if not is_zip(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="package-") as tmp:
        yield package_root(path, tmp)


def read_manifest(path: str | Path) -> dict:
    """The manifest of package directory `path` (clear error if it is not a package)."""
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise ValueError(f"{path} is not a package (no {MANIFEST})")
    manifest = json.loads(mpath.read_text())
    if manifest.get("format_version") != 1:
        raise ValueError(f"{mpath}: unsupported format_version {manifest.get('format_version')!r}")
    canonical_target(str(manifest.get("target")))  # an unknown target is refused with the known ones
    return manifest


def verify_package(path: str | Path, checkpoint: str | Path | None = None, parity: bool = True,
                   calibration: str | Path | None = None) -> dict:
    """Re-check the manifest's digest and every file hash (and the paths inside model files), then
    rebuild the reference model, re-run parity, and run the package through the runtime's `Session`
    with its own pre- and post-processing against the reference predictor (`converters.runtime_check`).

    The reference is rebuilt from the manifest (model name, image size, and the seed for untrained
    packages); a trained package needs its `checkpoint`, whose sha256 must match the manifest.
    `path` may be a `.zip`. Parity uses the bundled photos, or the images of `calibration`. A W8A8
    package is also checked against the fake-quant model rebuilt from its `w8a8_scales.json`.
    Returns {"ok", "hash_problems", "parity"}.
    """
    with opened_package(path) as root:
        return _verify_dir(root, checkpoint, parity, calibration)


def _verify_dir(path: Path, checkpoint: str | Path | None, parity: bool, calibration: str | Path | None) -> dict:
    manifest = read_manifest(path)
    problems = check_hashes(path)
    result: dict = {"ok": not problems, "hash_problems": problems, "parity": None}
    if problems or not parity:
        return result
    from converters.api import load_model
    from converters.parity import check_parity

    info = manifest["model"]
    if info.get("trained") and checkpoint is None:
        raise ValueError("this package was built from a checkpoint; pass it to re-run parity")
    model, got = load_model(info["name"], checkpoint, info["config"]["image_size"], seed=info.get("seed") or 0)
    if info.get("checkpoint_sha256") and got["checkpoint_sha256"] != info["checkpoint_sha256"]:
        raise ValueError("checkpoint sha256 does not match the one the package was built from")
    fake_quant = _w8a8_reference(model, path, manifest) or _target_reference(model, manifest, calibration)
    report = check_parity(model, path, manifest, calibration, fake_quant=fake_quant)
    from converters.runtime_check import check_runtime

    runtime = check_runtime(model, path, RUNTIME_IOU[manifest["precision"]], calibration)
    report["metrics"].update(runtime["metrics"])
    report["failures"] = report["failures"] + runtime["failures"]
    report["passed"] = report["passed"] and not runtime["failures"]
    result["parity"] = report
    result["ok"] = report["passed"]
    return result


def _w8a8_reference(model, path: Path, manifest: dict):  # noqa: ANN001, ANN202
    """W8A8 packages, and mixed packages of a plan with per-layer modes: the fake-quant model of their int8
    layers, rebuilt from the packaged scales; else None."""
    plan = manifest.get("precision_plan", {})
    if manifest.get("precision") == "mixed" and "layers" in plan and "scales_file" in plan:
        name = plan["scales_file"]
    elif manifest.get("precision") == "w8a8":
        name = plan["recipe"]["scales_file"]
    else:
        return None
    from converters.w8a8 import SCALES_FILE, package_reference, qmodel_from_scales

    scales = path / name
    if scales.name != SCALES_FILE or not scales.is_file():
        raise ValueError(f"{manifest['precision']} package without its {SCALES_FILE}")
    return package_reference(qmodel_from_scales(model, scales.read_bytes()), manifest["precision_plan"]["layers"])


def _target_reference(model, manifest: dict, calibration: str | Path | None):  # noqa: ANN001, ANN202
    """Packages of a target with its own compression (`Backend.fake_quant`, e.g. Core AI palette4): that
    fake-quant model, rebuilt with the package's plan (deterministic; W8A8 calibrates on the same images
    as at build time); else None."""
    from converters.precision import PrecisionPlan
    from converters.spec import ExportSpec

    spec = ExportSpec(model.config, manifest["target"], manifest["precision"])
    if spec.backend.fake_quant is None:
        return None
    plan = PrecisionPlan.from_dict(manifest.get("precision_plan", {}), manifest["precision"])
    return spec.backend.fake_quant(model, spec, plan, calibration, None)


def describe_package(path: str | Path) -> dict:
    """Short summary of a package (directory or `.zip`) for `cli.py info PACKAGE`."""
    with opened_package(path) as root:
        m = read_manifest(root)
    files = {k: v for k, v in m["models"].items()}
    return {
        "model": m["model"]["name"], "trained": m["model"].get("trained"), "target": m["target"],
        "precision": m["precision"], "min_os": m["min_os"], "image_size": m["preprocess"]["image_size"],
        "models": {k: v.get("file") or {kk: vv["file"] for kk, vv in v.get("variants", {}).items()}
                   for k, v in files.items()},
        "parity": m.get("parity", {}).get("metrics"), "parity_passed": m.get("parity", {}).get("passed"),
        **({"parity_vs_fake_quant": m["parity"]["fake_quant"]["metrics"]} if "fake_quant" in m.get("parity", {})
           else {}),
        "parity_inputs": m.get("parity", {}).get("inputs"),
        "shared_weights": m["models"].get("decoder", {}).get("weights"),
        "precision_plan": m.get("precision_plan", {}).get("name"),
    }
