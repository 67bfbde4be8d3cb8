"""W8A8 export: the recipe's fake-quant model -> a package's model files, through the target's backend.

Each backend's `export_w8a8` (`converters/backends/<target>/w8a8.py`) takes the calibrated fake-quant
model `q` (`converters.w8a8.recipe_qmodel`), writes the same files, signatures and manifest `models`
section as its float export, and returns the layer split (`converters.w8a8.layer_split` form) its
files actually hold.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from converters.backends import get_backend
from converters.precision import PrecisionPlan
from converters.spec import ExportSpec

if TYPE_CHECKING:
    import torch


def export_w8a8(q: torch.nn.Module, spec: ExportSpec, out_dir: Path, plan: PrecisionPlan, work: Path,
                progress: Callable[[str], None] | None = None,
                calibration: str | Path | None = None) -> tuple[dict, dict]:
    """Write the W8A8 model files of `spec.target` into `out_dir`: (manifest `models` section, layer split).

    `calibration` gives the images the recipe's scales were searched on (LiteRT calibrates the ranges of
    its int8 outputs on them). A target without a W8A8 export is refused.
    """
    backend = get_backend(spec.target)
    if backend.export_w8a8 is None:
        raise ValueError(f"target {backend.name} has no w8a8 export")
    say = progress or (lambda msg: None)
    work.mkdir(parents=True, exist_ok=True)
    return backend.export_w8a8(q, spec, out_dir, plan, work, say, calibration)
