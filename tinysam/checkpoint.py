"""Reading official checkpoints safely and loading them strictly, with one clear error when they do not fit.

Formats: a plain state_dict in `.pth`/`.pt` (read with `torch.load(weights_only=True)`, so no code is
ever unpickled), EfficientSAM's `{"model": state_dict}`, and `.safetensors`. A `module.` prefix
(from DataParallel) is stripped. A 1024 SAM ViT checkpoint loads into a model built for a smaller
input: `pos_embed` is resized bicubically and relative-position tables linearly.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
import zipfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import torch
from torch import nn

from .modeling.image_encoder import resize_pos_embed, resize_rel_pos

TORCH_SUFFIXES = (".pth", ".pt")
SAFETENSORS_SUFFIX = ".safetensors"


class CheckpointError(ValueError):
    """A checkpoint file cannot be read or does not fit the model."""


class NonFiniteWeightsWarning(RuntimeWarning):
    """A checkpoint holds NaN or Inf values."""


@dataclass
class LoadedCheckpoint:
    """What was loaded: the file, its sha256 and which tensors were resized to the model's input size."""

    path: str
    sha256: str
    resized: list[str] = field(default_factory=list)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_file(path: Path) -> None:
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; expected a .pth, .pt or .safetensors file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a regular file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read ({exc.strerror or exc})") from None


def _read_torch(path: Path) -> object:
    with open(path, "rb") as fh:
        head = fh.read(2)
    if head != b"PK" and not head.startswith(b"\x80"):
        raise CheckpointError(f"checkpoint {path} is not a PyTorch checkpoint (unrecognized file header)")
    if head == b"PK":
        _check_zip_records(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            raise CheckpointError(
                f"checkpoint {path} holds pickled Python objects, not a plain state_dict (e.g. a whole saved "
                "model such as a quantized Q-TinySAM file); only tensor checkpoints are loaded, code is never unpickled"
            ) from None
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({exc})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({first})") from None


def _check_zip_records(path: Path) -> None:
    """Refuse a zip-format torch checkpoint whose records fail their CRC-32 (torch's reader does not check)."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({first})") from None
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} is corrupt: zip record {bad!r} fails its CRC check")


def _read_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is truncated or not a valid safetensors file ({exc})") from None


def unwrap_state_dict(obj: object, where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Plain state_dict from a loaded object: unwraps {"model": ...}, strips a `module.` prefix."""
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj:
        kind = type(obj).__name__ if not isinstance(obj, dict) else "an empty dict"
        raise CheckpointError(f"{where} does not contain a state_dict (found {kind})")
    not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"{where} does not contain a state_dict: entry {not_tensors[0]!r} is a "
            f"{type(obj[not_tensors[0]]).__name__}, not a tensor"
        )
    keys = [str(k) for k in obj]
    if all(k.startswith("module.") for k in keys):
        return {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file (.pth/.pt/.safetensors) into a plain CPU state_dict."""
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix in TORCH_SUFFIXES:
        obj = _read_torch(path)
    elif suffix == SAFETENSORS_SUFFIX:
        obj = _read_safetensors(path)
    else:
        raise CheckpointError(f"checkpoint {path} has unsupported type {suffix or '(none)'!r}; use .pth, .pt or .safetensors")
    return unwrap_state_dict(obj, f"checkpoint {path}")


def adapt_input_size(
    state_dict: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Resize `pos_embed` (bicubic) and `rel_pos_h/w` (linear) whose spatial size differs from `target`."""
    out = dict(state_dict)
    resized = []
    for key, value in state_dict.items():
        want = target.get(key)
        if want is None or tuple(want.shape) == tuple(value.shape):
            continue
        if key.endswith("pos_embed") and value.dim() == 4 and want.dim() == 4 and value.shape[-1] == want.shape[-1]:
            if want.shape[1] == want.shape[2] and value.shape[0] == want.shape[0]:
                out[key] = resize_pos_embed(value, int(want.shape[1]))
                resized.append(key)
        elif key.endswith(("rel_pos_h", "rel_pos_w")) and value.dim() == 2 and want.dim() == 2:
            if value.shape[1] == want.shape[1]:
                out[key] = resize_rel_pos(value, int(want.shape[0]))
                resized.append(key)
    return out, resized


@cache
def expected_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """State_dict key -> shape of the named model at its native size (built on the meta device)."""
    from .build import build_model
    from .config import get_config

    cfg = get_config(name)
    try:
        with torch.device("meta"):
            model = build_model(cfg)
    except Exception:  # noqa: BLE001 - some modules build buffers the meta device refuses; fall back
        model = build_model(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def rank_known_models(state_dict: dict[str, torch.Tensor]) -> list[tuple[str, float, float]]:
    """Known models by key overlap, then shape agreement, best first: [(name, key_score, shape_score)]."""
    from .config import MODEL_CONFIGS

    keys = set(state_dict)
    scores = []
    for name in MODEL_CONFIGS:
        try:
            shapes = expected_shapes(name)
        except Exception:  # noqa: BLE001 - diagnostics only: skip a model family that cannot be built here
            continue
        common = keys & set(shapes)
        key_score = len(common) / max(len(keys | set(shapes)), 1)
        shape_score = sum(tuple(state_dict[k].shape) == shapes[k] for k in common) / max(len(common), 1)
        scores.append((name, key_score, shape_score))
    scores.sort(key=lambda s: (s[1], s[2]), reverse=True)
    return scores


def _describe_guess(state_dict: dict[str, torch.Tensor]) -> str:
    ranked = rank_known_models(state_dict)
    if not ranked:
        return "no known model to compare with"
    best = ranked[0][1]
    if best < 0.5:
        return f"the keys do not look like any known model (closest: {ranked[0][0]}, {best:.0%} key overlap)"
    names = [n for n, key_score, shape_score in ranked if (key_score, shape_score) == ranked[0][1:]]
    return f"the keys look like {' / '.join(names)} ({best:.0%} key overlap)"


def check_fits(state_dict: dict[str, torch.Tensor], target: dict[str, torch.Tensor], what: str) -> None:
    """Raise one CheckpointError naming the closest known model and the first bad keys, if any."""
    missing = [k for k in target if k not in state_dict]
    unexpected = [k for k in state_dict if k not in target]
    mismatched = [k for k in target if k in state_dict and tuple(state_dict[k].shape) != tuple(target[k].shape)]
    if not (missing or unexpected or mismatched):
        return
    parts = [f"{what}: {_describe_guess(state_dict)}"]
    if missing:
        parts.append(f"{len(missing)} missing (first {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (first {unexpected[0]})")
    if mismatched:
        k = mismatched[0]
        parts.append(
            f"{len(mismatched)} shape mismatches (first {k}: checkpoint {list(state_dict[k].shape)} "
            f"vs model {list(target[k].shape)})"
        )
    raise CheckpointError("; ".join(parts))


def warn_non_finite(state_dict: dict[str, torch.Tensor], where: str, allow: bool = True) -> list[str]:
    """Tensors that hold NaN/Inf: a CheckpointError naming them, or with `allow` a
    NonFiniteWeightsWarning; returns their names."""
    bad = [k for k, v in state_dict.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        msg = f"{where} holds NaN/Inf values in {len(bad)} tensor(s): {shown}"
        if not allow:
            raise CheckpointError(f"{msg} (pass --allow-nonfinite-weights to load it anyway)")
        warnings.warn(msg, NonFiniteWeightsWarning, stacklevel=3)
    return bad


def load_state_dict_into(model: nn.Module, state_dict: dict[str, torch.Tensor], what: str = "checkpoint",
                         allow_nonfinite: bool = False) -> list[str]:
    """Resize input-size-dependent tensors, check the fit, load strictly; returns the resized keys.

    NaN/Inf values are refused (CheckpointError) unless `allow_nonfinite`, which only warns."""
    target = model.state_dict()
    state_dict, resized = adapt_input_size(unwrap_state_dict(state_dict, what), target)
    name = getattr(getattr(model, "config", None), "name", None)
    check_fits(state_dict, target, f"{what} does not fit model {name!r}" if name else f"{what} does not fit the model")
    warn_non_finite(state_dict, what, allow=allow_nonfinite)
    model.load_state_dict(state_dict, strict=True)
    return resized


def load_checkpoint(model: nn.Module, path: str | Path, allow_nonfinite: bool = False) -> LoadedCheckpoint:
    """Load a checkpoint file into `model` strictly; returns path, sha256 and resized keys."""
    path = Path(path)
    state_dict = read_state_dict(path)
    resized = load_state_dict_into(model, state_dict, f"checkpoint {path.name}", allow_nonfinite)
    return LoadedCheckpoint(path=str(path), sha256=file_sha256(path), resized=resized)
