"""`ConvertOptions`: everything `convert` / `build_package` are asked to do, as one typed object."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from converters.precision import MIXED_PLANS
from converters.spec import PRECISIONS, check_choice, parse_targets


@dataclass(frozen=True)
class ConvertOptions:
    """How to convert.

    - `targets`: "all", "onnx,tflite" or a sequence of target names (aliases such as "litert" accepted).
    - `precision`: fp32 | fp16 | int8 | mixed | w8a8 | palette4 | palette6 | w8a8-opt (the last three Core AI only).
    - `out_dir`: where the packages (`<model>-<target>-<precision>/`) are written.
    - `checkpoint` / `untrained`: the weights (default: the shipped trained weights of the model, else a
      seeded untrained model); `image_size`: model input size (default: native, or the weights').
    - `calibration`: image directory for the parity check, the measured mixed plan and the w8a8 search.
    - `verify`: run the parity gate; `zip`: also write `<package>.zip`.
    - `mixed_plan`, `max_iou_drop`, `max_size_mb`: the mixed plan (`converters.mixed_plan`).
    """

    targets: str | tuple[str, ...] = "all"
    precision: str = "fp32"
    out_dir: Path = Path("packages")
    checkpoint: Path | None = None
    untrained: bool = False
    image_size: int | None = None
    calibration: Path | None = None
    verify: bool = True
    zip: bool = False
    mixed_plan: str = "auto"
    max_iou_drop: float | None = None
    max_size_mb: float | None = None

    def __post_init__(self) -> None:
        for name in ("out_dir", "checkpoint", "calibration"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        if not isinstance(self.targets, str):
            object.__setattr__(self, "targets", tuple(self.targets))

    @property
    def budget_given(self) -> bool:
        """A measured mixed plan budget was given."""
        return self.max_iou_drop is not None or self.max_size_mb is not None

    def target_list(self) -> list[str]:
        """The targets, resolved and de-duplicated (unknown names refused with the known ones). "all" means
        every target that exports the precision (e.g. palette4 only Core AI, the Q-TinySAM w8a8 not Core AI);
        a named target that does not export it is refused, naming the targets that do."""
        from converters.backends import get_backend

        targets = parse_targets(self.targets)
        asked = self.targets.split(",") if isinstance(self.targets, str) else list(self.targets)
        exports = [t for t in targets if self.precision in get_backend(t).capabilities.precisions]
        if "all" in [str(t).strip().lower() for t in asked]:
            return exports
        for t in targets:
            if t not in exports:
                have = [b for b in parse_targets("all") if self.precision in get_backend(b).capabilities.precisions]
                raise ValueError(f"target {t} has no precision {self.precision!r} (it exports: "
                                 f"{', '.join(get_backend(t).capabilities.precisions)}); {self.precision} is "
                                 f"exported by: {', '.join(have)}")
        return targets

    def check(self) -> ConvertOptions:
        """Refuse inconsistent options with a one-line ValueError; returns self."""
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("mixed plan", self.mixed_plan, MIXED_PLANS)
        if self.precision != "mixed" and self.budget_given:
            raise ValueError("--max-iou-drop/--max-size apply only to --precision mixed")
        if self.precision == "mixed" and self.mixed_plan == "fixed" and self.budget_given:
            raise ValueError("--max-iou-drop/--max-size apply only to the measured mixed plan")
        if self.max_iou_drop is not None and self.max_size_mb is not None:
            raise ValueError("give one mixed-plan budget: --max-iou-drop or --max-size, not both")
        self.target_list()
        if self.calibration is not None and not self.calibration.is_dir():
            raise ValueError(f"calibration directory {self.calibration} does not exist")
        if self.untrained and self.checkpoint is not None:
            raise ValueError("give a checkpoint or ask for the untrained model, not both")
        return self
