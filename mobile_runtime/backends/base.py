"""What every runtime backend returns (`Model`), and the input checks they share."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Model(Protocol):
    """What every backend returns."""

    input_names: list[str]
    output_names: list[str]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; keys are backend tensor names."""
        ...


def input_shape(model: Model, name: str) -> tuple[int | None, ...] | None:
    """Declared shape of input `name` (None for a dynamic axis), or None when the backend does not say."""
    return getattr(model, "input_shapes", {}).get(name)


def check_inputs(model: Model, inputs: dict[str, np.ndarray]) -> None:
    """Refuse missing or unknown input names with one clear message."""
    missing = [n for n in model.input_names if n not in inputs]
    extra = [n for n in inputs if n not in model.input_names]
    if missing or extra:
        raise ValueError(f"model inputs are {model.input_names}; missing {missing}, unexpected {extra}")
