"""`convert(model_name, ConvertOptions(...))`: model -> verified deployment packages, one per target."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from converters.options import ConvertOptions
from converters.package import MANIFEST, AtomicPackage, build_manifest, hash_tree, sha256_file
from converters.precision import PrecisionPlan, applied_precision, precision_plan, resolve_mixed_plan
from converters.readme import render_readme
from converters.spec import ExportSpec
from mobile_runtime.package_format import Manifest

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


def dir_size(path: Path) -> int:
    """Total bytes of the files under `path` (or of the file itself)."""
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def load_model(model_name: str, checkpoint: str | Path | None, image_size: int | None, seed: int = 0,
               allow_nonfinite: bool = False):
    """Build the reference model; without a checkpoint a seeded, untrained model (marked as such).
    NaN/Inf weights are refused unless `allow_nonfinite`."""
    from tinysam.build import build_sam

    if checkpoint is not None and not Path(checkpoint).is_file():
        raise ValueError(f"checkpoint {checkpoint} does not exist")
    model = build_sam(model_name, checkpoint, image_size=image_size, seed=None if checkpoint else seed,
                      allow_nonfinite=allow_nonfinite)
    info = {"name": model_name, "config": model.config.to_dict(),
            "checkpoint_sha256": sha256_file(Path(checkpoint)) if checkpoint else None,
            "trained": checkpoint is not None, "seed": None if checkpoint else seed}
    return model.eval(), info


def build_package(model, model_info: dict, target: str, options: ConvertOptions,
                  progress: Callable[[str], None] | None = None, *, plan: dict | PrecisionPlan | None = None,
                  extra_files: dict[str, bytes] | None = None, qmodel: torch.nn.Module | None = None) -> PackageResult:
    """Export, check parity and atomically write one package of `target`; raises ParityError on a failed gate.

    From `options`: precision, out_dir, verify, zip, calibration (parity runs on 2 bundled photos, or
    on the first images of `calibration` when given).
    `plan` overrides the precision's built-in plan (a measured mixed plan); `extra_files`
    (name -> bytes, e.g. the sensitivity plot) are written into the package and hashed.
    `precision="w8a8"`: `qmodel` is the recipe's calibrated fake-quant model (`converters.w8a8.recipe_qmodel`,
    searched on `calibration` when not given); its scales go into the package (`w8a8_scales.json`) and
    parity also gates against its fake-quant model of the package's int8 layers.
    """
    say = progress or (lambda msg: None)
    precision, calibration = options.precision, options.calibration
    spec = ExportSpec(model.config, target, precision)
    if not isinstance(plan, PrecisionPlan):
        plan = PrecisionPlan.from_dict(plan if plan is not None else precision_plan(precision), precision)
    plan = plan.with_data(applied=applied_precision(plan, spec.target))
    start = time.perf_counter()
    reference = None
    modal = precision == "mixed" and bool(plan.layer_modes) and spec.backend.export_mixed is not None
    if modal and qmodel is None:
        raise ValueError("a mixed plan with per-layer modes needs the recipe's model (qmodel)")
    if precision == "w8a8" or modal:
        from converters.w8a8 import SCALES_FILE, recipe_qmodel, scales_json

        qmodel = qmodel if qmodel is not None else recipe_qmodel(model, calibration, progress=say)
        if modal:  # the weight scales the plan was measured with (max-based for its int8-weight layers)
            from converters.mixed_modes import set_weight_scales

            set_weight_scales(qmodel, plan.layer_modes)
        int8 = {n for n, m in plan.layer_modes.items() if m != "float"} if modal else None  # a plan's: its int8 layers
        extra_files = {**(extra_files or {}), SCALES_FILE: scales_json(qmodel, int8)}
    final = Path(options.out_dir) / spec.package_name
    with AtomicPackage(final, zip_=options.zip, overwrite=options.overwrite) as pkg:
        for name, data in (extra_files or {}).items():
            if Path(name).name != name:
                raise ValueError(f"extra package file {name!r} must be a plain file name")
            (pkg.dir / name).write_bytes(data)
        if precision == "w8a8":
            from converters.w8a8 import package_reference, w8a8_plan
            from converters.w8a8_export import export_w8a8

            models, layers = export_w8a8(qmodel, spec, pkg.dir, plan, pkg.dir.parent / "work", say, calibration)
            plan = PrecisionPlan.from_dict({**w8a8_plan(qmodel, layers, spec.target), "applied": plan.data["applied"]},
                                           precision)
            reference = package_reference(qmodel, layers)
        elif modal:
            from converters.w8a8 import package_reference

            models, layers = spec.backend.export_mixed(qmodel, spec, pkg.dir, plan, pkg.dir.parent / "work", say,
                                                        calibration)
            counts = {c: len(v) for c, v in layers.items() if c != "float"}
            counts["float"] = sum(len(v) for v in layers["float"].values())
            plan = plan.with_data(layer_counts=counts, layers=layers, scales_file=SCALES_FILE)
            reference = package_reference(qmodel, layers)
        else:
            if spec.backend.fake_quant is not None:  # the target's own compression: gate against its model too
                reference = spec.backend.fake_quant(model, spec, plan, calibration, say)
            extra = {"calibration": calibration} if spec.backend.calibrates else {}
            models = spec.backend.export(model, spec, pkg.dir, plan, pkg.dir.parent / "work", say, **extra)
        draft = build_manifest(spec, model_info, models, plan.to_dict(), {}, hash_tree(pkg.dir))
        parity: dict = {"skipped": True}
        if options.verify:
            say(f"{spec.target}: checking parity with the reference")
            from converters.parity import check_parity

            parity = check_parity(model, pkg.dir, draft, calibration, fake_quant=reference)
            if not parity["passed"]:
                raise ParityError(f"{spec.package_name} failed parity: " + "; ".join(parity["failures"]))
        (pkg.dir / "README.md").write_text(render_readme({**draft, "parity": parity}))
        manifest = build_manifest(spec, model_info, models, plan.to_dict(), parity, hash_tree(pkg.dir))
        manifest = Manifest.from_dict(manifest).to_dict()  # written through the typed package format
        (pkg.dir / MANIFEST).write_text(json.dumps(manifest, separators=(",", ":"), allow_nan=False))  # shipped: no padding
        path = pkg.commit()
    return PackageResult(spec.target, precision, path, dir_size(path), time.perf_counter() - start, parity,
                         pkg.zip_path if options.zip else None)


def convert(model_name: str, options: ConvertOptions | None = None,
            progress: Callable[[str], None] | None = None) -> list[PackageResult]:
    """Convert `model_name` to one package per target of `options`; each is parity-checked before it appears.

    Without `options.checkpoint`, the project's shipped trained weights for the model are used where they
    exist (`tinysam.defaults`), else (or with `options.untrained`) a seeded untrained model that every
    output marks as such.

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
    options = (options or ConvertOptions()).check()
    precision, calibration = options.precision, options.calibration
    target_list = options.target_list()
    from calibration_data.atomic_dir import check_out_path

    check_out_path(options.out_dir, (options.checkpoint, calibration))
    say = progress or (lambda msg: None)
    for target, why in options.skipped_targets().items():
        say(f"{target}: skipped, {why}")
    from tinysam.defaults import resolve_default_weights

    checkpoint, image_size = options.checkpoint, options.image_size
    if not options.untrained:
        checkpoint, image_size, _ = resolve_default_weights(model_name, checkpoint, image_size)
    say(f"building {model_name}" + (f" at {image_size}" if image_size else "")
        + (f" from {checkpoint}" if checkpoint else ""))
    model, info = load_model(model_name, checkpoint, image_size, allow_nonfinite=options.allow_nonfinite)
    if not options.overwrite:  # refuse before any slow work, and before writing the first target
        for t in target_list:
            final = options.out_dir / ExportSpec(model.config, t, precision).package_name
            for existing in (final, *([final.with_name(final.name + ".zip")] if options.zip else [])):
                if existing.exists() or existing.is_symlink():
                    raise ValueError(f"{existing} already exists (pass --overwrite to replace it)")
    if not info["trained"]:
        say("note: no checkpoint given; using a seeded UNTRAINED model (masks are meaningless)")
    plans, extra, qmodel = {}, None, None
    if precision == "mixed" and resolve_mixed_plan(options.mixed_plan, plan_size(model_name, model, checkpoint),
                                                   options.budget_given) == "measured":
        plans, qmodel = measured_plans(model_name, model, checkpoint, options, target_list, say)
    if precision == "w8a8":
        from converters.w8a8 import recipe_qmodel

        qmodel = recipe_qmodel(model, calibration, progress=say)
    results = []
    for t in target_list:
        mp = plans.get(t)
        if mp is not None:
            from converters.mixed_plan import FRONTIER_FILE

            extra = {FRONTIER_FILE: mp.plot_png}
        results.append(build_package(model, info, t, options, say, plan=mp.plan if mp else None, extra_files=extra,
                                     qmodel=qmodel))
    return results


def plan_size(model_name: str, model, checkpoint: str | Path | None) -> int:  # noqa: ANN001
    """Input size the mixed plan's accuracy is measured at: the shipped weights' trained size when the model
    runs larger (accuracy where the model works; speed comes from the target's 1024 px cost table), else
    the model's own size."""
    from tinysam.defaults import all_default_weights

    size = model.config.image_size
    if checkpoint is None:
        return size
    for w in all_default_weights(model_name):
        if w.path.resolve() == Path(checkpoint).resolve() and w.image_size is not None:
            return min(size, w.image_size)
    return size


def measured_plans(model_name: str, model, checkpoint, options: ConvertOptions, targets: list[str],  # noqa: ANN001
                   say: Callable[[str], None]) -> tuple[dict, torch.nn.Module]:
    """target -> MeasuredPlan (`converters.mixed_plan.PlanMeasurer`), and the recipe model at the package size."""
    from converters.mixed_plan import PlanMeasurer
    from converters.mixed_select import Budget
    from converters.w8a8 import qmodel_from_scales, scales_json

    budget = Budget.of(options.max_iou_drop, options.max_latency_ratio, options.max_size_mb)
    size = plan_size(model_name, model, checkpoint)
    plan_model = model if size == model.config.image_size else load_model(model_name, checkpoint, size)[0]
    if plan_model is not model:
        say(f"mixed plan: accuracy measured at the weights' trained size {size} px, speed from the 1024 px cost table")
    measurer = PlanMeasurer(plan_model, options.calibration, progress=say)
    plans = {t: measurer.plan(t, budget) for t in targets}
    q = measurer.q
    from converters.mixed_modes import set_weight_scales

    set_weight_scales(q, {})  # the recipe's scales again (each package sets its plan's)
    if plan_model is not model:  # the same scales on the package's model
        calib = q.recipe_calibration
        q = qmodel_from_scales(model, scales_json(q))
        q.recipe_calibration = calib
    return plans, q
