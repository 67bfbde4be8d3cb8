"""The project's built-in default weights: trained students shipped in `tinysam/weights/`.

A checkpoint there (`.pt`/`.pth`/`.safetensors`) serves a model when its sidecar `<stem>.json`
names it (`{"model": "tinysam", "image_size": 256, ...}`), or, without a sidecar, when the file
stem starts with the model name. Without one, callers build a seeded random model and say that it
is untrained.

Several checkpoints may serve one model at different input sizes (a 128 px default for fast runs, a
256 px one): without a requested size the first one by file name is the default; a requested
`image_size` picks the checkpoint trained at the size nearest it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
WEIGHT_SUFFIXES = (".pt", ".pth", ".safetensors")
UNTRAINED_SEED = 0


@dataclass(frozen=True)
class DefaultWeights:
    """A checkpoint found in the weights directory."""

    path: Path
    model: str
    image_size: int | None
    meta: dict


def find_default_weights(model: str, weights_dir: str | Path | None = None,
                         image_size: int | None = None) -> DefaultWeights | None:
    """The checkpoint in `weights_dir` (default `tinysam/weights`) made for `model`: with `image_size`, the one
    trained at the size nearest it (a tie: the larger; deploying at 1024 takes the 256 px weights, not the
    128 px ones), else the first one (by file name), or None."""
    found = all_default_weights(model, weights_dir)
    sized = [w for w in found if w.image_size]
    if image_size is not None and sized:  # trained at that size, else the nearest (a tie: the larger)
        return min(sized, key=lambda w: (abs(w.image_size - image_size), -w.image_size))
    return found[0] if found else None


def all_default_weights(model: str, weights_dir: str | Path | None = None) -> list[DefaultWeights]:
    """Every checkpoint in `weights_dir` made for `model`, sorted by file name."""
    root = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    if not root.is_dir():
        return []
    found = []
    for path in sorted(p for p in root.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file()):
        sidecar = path.with_suffix(".json")
        meta: dict[str, Any] = {}
        if sidecar.is_file():
            try:
                meta = json.loads(sidecar.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ValueError(f"cannot read weights description {sidecar}: {exc}") from None
        name = meta.get("model") or meta.get("student")
        if (name == model) or (name is None and path.stem.startswith(model)):
            size = meta.get("image_size")
            found.append(DefaultWeights(path, model, int(size) if size else None, meta))
    return found


def resolve_default_weights(model: str, checkpoint: str | Path | None, image_size: int | None,
                            weights_dir: str | Path | None = None) -> tuple[Path | None, int | None, bool]:
    """(checkpoint, image_size, trained): the given checkpoint, else shipped weights, else none.

    A shipped checkpoint brings its own input size unless `image_size` is given; a given size picks
    the shipped checkpoint trained at it when there is one.
    """
    if checkpoint is not None:
        return Path(checkpoint), image_size, True
    found = find_default_weights(model, weights_dir, image_size)
    if found is None:
        return None, image_size, False
    return found.path, image_size or found.image_size, True
