"""Opening a predictor on either backend: the PyTorch reference or an exported package.

torch and tinysam are imported inside the functions, so the package path works without them.

Default weights: without --checkpoint, a trained student shipped in ``tinysam/weights/`` is
used when one matches the requested model (rules in `tinysam.defaults`); otherwise the model is
built with seeded random weights (untrained) and the caller is told so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .adapter import PromptPredictor


@dataclass
class Backend:
    """An opened model: an adapted predictor plus what is needed to run the everything modes."""

    predictor: PromptPredictor
    description: str
    trained: bool
    make_everything: Callable[[str, int], Callable[[Any], list[dict]]]
    info: dict[str, Any] = field(default_factory=dict)


def open_torch_backend(model: str = "tinysam", checkpoint: str | Path | None = None,
                       image_size: int | None = None, weights_dir: str | Path | None = None,
                       allow_nonfinite: bool = False) -> Backend:
    """Build the PyTorch reference (checkpoint, shipped default weights, or seeded untrained)."""
    import tinysam
    from tinysam.defaults import UNTRAINED_SEED, resolve_default_weights
    from tinysam.predictor import SamPredictor

    source = "checkpoint" if checkpoint is not None else "shipped weights"
    checkpoint, image_size, _ = resolve_default_weights(model, checkpoint, image_size, weights_dir)
    seed = UNTRAINED_SEED if checkpoint is None else None
    sam = tinysam.build_sam(model, checkpoint, image_size, seed=seed, allow_nonfinite=allow_nonfinite)
    trained = bool(getattr(sam, "trained", checkpoint is not None))
    what = f"{source} {checkpoint}" if checkpoint is not None else f"random weights (seed {UNTRAINED_SEED})"
    description = f"{model} @ {sam.image_size} (PyTorch, {what})"

    def make_everything(mode: str, points_per_side: int) -> Callable[[Any], list[dict]]:
        if mode == "dense":
            from tinysam.automatic_mask_generator import SamAutomaticMaskGenerator as Gen
        else:
            from tinysam.hierarchical_mask_generator import SamHierarchicalMaskGenerator as Gen
        return Gen(sam, points_per_side=points_per_side, output_mode="binary_mask").generate

    info = {"backend": "torch", "model": model, "image_size": int(sam.image_size),
            "checkpoint": str(checkpoint) if checkpoint is not None else None, "trained": trained}
    return Backend(PromptPredictor(SamPredictor(sam)), description, trained, make_everything, info)


def open_package_backend(package: str | Path) -> Backend:
    """Open an exported package with the mobile runtime."""
    import mobile_runtime

    session = mobile_runtime.load_package(package)
    m = session.manifest
    model = m.get("model", {})
    trained = bool(model.get("trained", False))
    description = (f"{model.get('name', '?')} @ {session.image_size} "
                   f"({m.get('target')}/{m.get('precision')} package {Path(package)})")

    def make_everything(mode: str, points_per_side: int) -> Callable[[Any], list[dict]]:
        gen = mobile_runtime.EverythingGenerator(session, mode=mode, points_per_side=points_per_side,
                                                 output_mode="binary_mask")
        return gen.generate

    info = {"backend": m.get("target"), "model": model.get("name"), "image_size": session.image_size,
            "package": str(package), "precision": m.get("precision"), "trained": trained}
    return Backend(PromptPredictor(session), description, trained, make_everything, info)


def open_backend(model: str = "tinysam", checkpoint: str | Path | None = None, image_size: int | None = None,
                 package: str | Path | None = None, weights_dir: str | Path | None = None,
                 allow_nonfinite: bool = False) -> Backend:
    """A package when `package` is given, else the PyTorch reference (NaN/Inf weights refused unless
    `allow_nonfinite`)."""
    if package is not None:
        if checkpoint is not None or image_size is not None:
            raise ValueError("--package cannot be combined with --checkpoint or --image-size")
        return open_package_backend(package)
    return open_torch_backend(model, checkpoint, image_size, weights_dir, allow_nonfinite)
