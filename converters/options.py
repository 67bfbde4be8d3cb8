"""`ConvertOptions`: everything `convert` / `build_package` are asked to do, as one typed object."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from converters.precision import MIXED_PLANS
from converters.spec import PRECISIONS, check_choice, check_target_precision, parse_targets


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
    - `overwrite`: replace existing packages (built whole first, then swapped in); without it an existing
      package is never touched. `allow_nonfinite`: accept NaN/Inf weights in the checkpoint.
    - `mixed_plan`, `max_iou_drop`, `max_latency_ratio`, `max_size_mb`: the mixed plan and its one budget
      (`converters.mixed_plan`, `converters.mixed_select.Budget`).
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
    max_latency_ratio: float | None = None
    overwrite: bool = False
    allow_nonfinite: bool = False

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
        return any(v is not None for v in (self.max_iou_drop, self.max_size_mb, self.max_latency_ratio))

    @property
    def all_targets(self) -> bool:
        """The targets were given as "all"."""
        items = self.targets.split(",") if isinstance(self.targets, str) else list(self.targets)
        return "all" in [str(t).strip().lower() for t in items]

    def skipped_targets(self) -> dict[str, str]:
        """Under "all": target -> why it is left out (it does not build the precision)."""
        out = {}
        for t in parse_targets(self.targets) if self.all_targets else []:
            try:
                check_target_precision(t, self.precision)
            except ValueError as exc:
                out[t] = str(exc)
        return out

    def target_list(self) -> list[str]:
        """The targets, resolved and de-duplicated (unknown names refused with the known ones); "all"
        means every target that builds the precision, a named target that does not is refused."""
        skipped = self.skipped_targets()
        targets = [t for t in parse_targets(self.targets) if t not in skipped]
        for t in targets:
            check_target_precision(t, self.precision)
        return targets

    def check(self) -> ConvertOptions:
        """Refuse inconsistent options with a one-line ValueError; returns self."""
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("mixed plan", self.mixed_plan, MIXED_PLANS)
        if self.precision != "mixed" and self.budget_given:
            raise ValueError("--max-iou-drop/--max-latency-ratio/--max-size apply only to --precision mixed")
        if self.precision == "mixed" and self.mixed_plan == "fixed" and self.budget_given:
            raise ValueError("--max-iou-drop/--max-latency-ratio/--max-size apply only to the measured mixed plan")
        from converters.mixed_select import Budget

        Budget.of(self.max_iou_drop, self.max_latency_ratio, self.max_size_mb)  # exactly one, in range
        self.target_list()
        if self.calibration is not None and not self.calibration.is_dir():
            raise ValueError(f"calibration directory {self.calibration} does not exist")
        if self.untrained and self.checkpoint is not None:
            raise ValueError("give a checkpoint or ask for the untrained model, not both")
        return self
