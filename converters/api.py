"""`convert(...)`: model -> verified deployment packages, one per target."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from converters.package import MANIFEST, AtomicPackage, build_manifest, hash_tree, sha256_file
from converters.precision import MIXED_PLANS, applied_precision, precision_plan, resolve_mixed_plan
from converters.readme import render_readme
from converters.spec import (
    PRECISIONS,
    ExportSpec,
    check_choice,
    check_target_precision,
    parse_targets,
    targets_for,
)

if TYPE_CHECKING:
    import torch


class ParityError(RuntimeError):
    """The exported package does not match the reference within the precision's thresholds."""


@dataclass
class PackageResult:
    """One finished package."""

    target: str
    precision: str
    path: Path
    size_bytes: int
    seconds: float
    parity: dict = field(default_factory=dict)
    zip_path: Path | None = None


def _exporter(target: str) -> Callable:
    if target == "onnx":
        from converters.onnx_export import export_onnx

        return export_onnx
    if target == "tflite":
        from converters.tflite_export import export_tflite

        return export_tflite
    if target == "coreai":
        from converters.backends.coreai.export import export_coreai

        return export_coreai
    from converters.coreml_export import export_coreml

    return export_coreml


def dir_size(path: Path) -> int:
    """Total bytes of the files under `path` (or of the file itself)."""
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def load_model(model_name: str, checkpoint: str | Path | None, image_size: int | None, seed: int = 0):
    """Build the reference model; without a checkpoint a seeded, untrained model (marked as such)."""
    from tinysam.build import build_sam

    if checkpoint is not None and not Path(checkpoint).is_file():
        raise ValueError(f"checkpoint {checkpoint} does not exist")
    model = build_sam(model_name, checkpoint, image_size=image_size, seed=None if checkpoint else seed)
    info = {"name": model_name, "config": model.config.to_dict(),
            "checkpoint_sha256": sha256_file(Path(checkpoint)) if checkpoint else None,
            "trained": checkpoint is not None, "seed": None if checkpoint else seed}
    return model.eval(), info


def fake_quant_reference(model, spec: ExportSpec, plan: dict, calibration: str | Path | None = None,
                         progress: Callable[[str], None] | None = None):  # noqa: ANN001, ANN201
    """The fake-quant model a compressed Core AI package is also gated against (coreai-opt's prepared
    model; compressing here also prepares what the export converts); None for the other packages."""
    from converters.backends.coreai.compress import COMPRESSED

    if spec.target != "coreai" or spec.precision not in COMPRESSED:
        return None
    from converters.backends.coreai.compress import compressed_model

    return compressed_model(model, spec, plan, calibration, progress).fake_quant


def build_package(model, model_info: dict, target: str, precision: str, out_dir: Path, verify: bool = True,
                  zip_: bool = False, progress: Callable[[str], None] | None = None,
                  calibration: str | Path | None = None, plan: dict | None = None,
                  extra_files: dict[str, bytes] | None = None, qmodel: torch.nn.Module | None = None) -> PackageResult:
    """Export, check parity and atomically write one package; raises ParityError on a failed gate.

    Parity runs on 2 bundled photos, or on the first images of `calibration` when given.
    `plan` overrides the precision's built-in plan (a measured mixed plan); `extra_files`
    (name -> bytes, e.g. the sensitivity plot) are written into the package and hashed.
    `precision="w8a8"`: `qmodel` is the recipe's calibrated fake-quant model (`converters.w8a8.recipe_qmodel`,
    searched on `calibration` when not given); its scales go into the package (`w8a8_scales.json`) and
    parity also gates against its fake-quant model of the package's int8 layers.
    """
    say = progress or (lambda msg: None)
    spec = ExportSpec(model.config, target, precision)
    plan = dict(plan) if plan is not None else precision_plan(precision)
    plan["applied"] = applied_precision(plan, target)
    start = time.perf_counter()
    reference = None
    if precision == "w8a8":
        from converters.w8a8 import SCALES_FILE, recipe_qmodel, scales_json

        qmodel = qmodel if qmodel is not None else recipe_qmodel(model, calibration, progress=say)
        extra_files = {**(extra_files or {}), SCALES_FILE: scales_json(qmodel)}
    final = Path(out_dir) / spec.package_name
    with AtomicPackage(final, zip_=zip_) as pkg:
        for name, data in (extra_files or {}).items():
            if Path(name).name != name:
                raise ValueError(f"extra package file {name!r} must be a plain file name")
            (pkg.dir / name).write_bytes(data)
        if precision == "w8a8":
            from converters.w8a8 import package_reference, w8a8_plan
            from converters.w8a8_export import export_w8a8

            models, layers = export_w8a8(qmodel, spec, pkg.dir, plan, pkg.dir.parent / "work", say, calibration)
            plan = {**w8a8_plan(qmodel, layers, target), "applied": plan["applied"]}
            reference = package_reference(qmodel, layers)
        else:
            reference = fake_quant_reference(model, spec, plan, calibration, say)
            models = _exporter(target)(model, spec, pkg.dir, plan, pkg.dir.parent / "work", progress=say)
        draft = build_manifest(spec, model_info, models, plan, {}, hash_tree(pkg.dir))
        parity: dict = {"skipped": True}
        if verify:
            say(f"{target}: checking parity with the reference")
            from converters.parity import check_parity

            parity = check_parity(model, pkg.dir, draft, calibration, fake_quant=reference)
            if not parity["passed"]:
                raise ParityError(f"{spec.package_name} failed parity: " + "; ".join(parity["failures"]))
        (pkg.dir / "README.md").write_text(render_readme({**draft, "parity": parity}))
        manifest = build_manifest(spec, model_info, models, plan, parity, hash_tree(pkg.dir))
        (pkg.dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
        path = pkg.commit()
    return PackageResult(target, precision, path, dir_size(path), time.perf_counter() - start, parity,
                         pkg.zip_path if zip_ else None)


def convert(model_name: str, checkpoint: str | Path | None = None, targets: str | list[str] = "all",
            precision: str = "fp32", out_dir: str | Path = "packages", calibration: str | Path | None = None,
            verify: bool = True, image_size: int | None = None, zip: bool = False,  # noqa: A002
            progress: Callable[[str], None] | None = None, mixed_plan: str = "auto",
            max_iou_drop: float | None = None, max_size_mb: float | None = None,
            untrained: bool = False) -> list[PackageResult]:
    """Convert `model_name` to one package per target; each is parity-checked before it appears.

    Without `checkpoint`, the project's shipped trained weights for the model are used where they
    exist (`tinysam.defaults`), else (or with `untrained`) a seeded untrained model that every output
    marks as such.

    `calibration` (a directory of images): the parity check runs on its first (up to 4) images
    instead of the bundled photos. The int8/mixed packages quantize weights only.

    `precision="w8a8"`: the Q-TinySAM recipe (int8 weights, static int8 activations) with scales
    searched once on the first 4 images of `calibration` (or the bundled photos) and shared by every
    target; see `converters.w8a8`.

    `precision="mixed"`: `mixed_plan="measured"` builds the plan from measured per-group
    sensitivity (`converters.mixed_plan`; images from `calibration` or the bundled photos; budget
    `max_iou_drop`, default 0.01, or `max_size_mb`), writes it and the measured sensitivities into
    the manifest and a `sensitivity.png` into each package; `"fixed"` uses the built-in plan;
    `"auto"` (default) measures at input sizes up to 512 (about 1.5 min at 256 on 2 cores; 15 min at
    1024) or when a budget is given, else uses the fixed plan.
    """
    check_choice("precision", precision, PRECISIONS)
    check_choice("mixed plan", mixed_plan, MIXED_PLANS)
    if precision != "mixed" and (max_iou_drop is not None or max_size_mb is not None):
        raise ValueError("--max-iou-drop/--max-size apply only to --precision mixed")
    if precision == "mixed" and mixed_plan == "fixed" and (max_iou_drop is not None or max_size_mb is not None):
        raise ValueError("--max-iou-drop/--max-size apply only to the measured mixed plan")
    if max_iou_drop is not None and max_size_mb is not None:
        raise ValueError("give one mixed-plan budget: --max-iou-drop or --max-size, not both")
    target_list = parse_targets(targets)
    asked = targets.split(",") if isinstance(targets, str) else list(targets)
    if "all" in [t.strip().lower() for t in asked]:
        target_list = targets_for(precision, target_list)  # `all`: every target that exports this precision
    for t in target_list:
        check_target_precision(t, precision)
    if calibration is not None and not Path(calibration).is_dir():
        raise ValueError(f"calibration directory {calibration} does not exist")
    say = progress or (lambda msg: None)
    from tinysam.defaults import resolve_default_weights

    if untrained and checkpoint is not None:
        raise ValueError("give a checkpoint or ask for the untrained model, not both")
    if not untrained:
        checkpoint, image_size, _ = resolve_default_weights(model_name, checkpoint, image_size)
    say(f"building {model_name}" + (f" at {image_size}" if image_size else "")
        + (f" from {checkpoint}" if checkpoint else ""))
    model, info = load_model(model_name, checkpoint, image_size)
    if not info["trained"]:
        say("note: no checkpoint given; using a seeded UNTRAINED model (masks are meaningless)")
    plan, extra = None, None
    budget = max_iou_drop is not None or max_size_mb is not None
    if precision == "mixed" and resolve_mixed_plan(mixed_plan, model.config.image_size, budget) == "measured":
        from converters.mixed_plan import PLOT_FILE, measure_mixed_plan

        measured = measure_mixed_plan(model, calibration, max_iou_drop, max_size_mb, progress=say)
        m = measured.plan["measured"]
        say(f"mixed plan: {len(measured.float_groups)} groups kept float, mask IoU drop {m['iou_drop']:.4f}, "
            f"~{m['size_mb']:.1f} MB weights ({measured.seconds:.0f} s)")
        plan, extra = measured.plan, {PLOT_FILE: measured.plot_png}
    qmodel = None
    if precision == "w8a8":
        from converters.w8a8 import recipe_qmodel

        qmodel = recipe_qmodel(model, calibration, progress=say)
    return [build_package(model, info, t, precision, Path(out_dir), verify, zip, say, calibration, plan, extra,
                          qmodel) for t in target_list]
