"""The trainer's files on disk, without pickle: tensors in safetensors, everything else in JSON.

Resume state of a run directory: ``resume.json`` (step, data position, config, optimizer
hyper-parameters and step counts, gradient-scaler state, numpy/python RNG states, and the name and
sha256 of its tensor file) and ``state_<step>.safetensors`` (student, SAMI decoder, Adam moments, torch
RNG states as uint8 tensors). A new tensor file is written first and ``resume.json`` replaced
atomically after it, so an interrupted save leaves the previous state readable. The final student is
``student.safetensors`` (fp32 state_dict).

An older run directory may hold ``last.pt``, a pickle; a pickle can run code when it is read, so it is
refused, never opened.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .teacher_cache import file_sha256

RESUME_JSON = "resume.json"
STUDENT_FILE = "student.safetensors"
LEGACY_PICKLE = "last.pt"
FORMAT = "tinysam-distill-resume/1"


def refuse_legacy_pickle(out: Path) -> None:
    """Raise ValueError if ``out`` holds a pickle resume state (it is never read)."""
    legacy = out / LEGACY_PICKLE
    if legacy.exists():
        raise ValueError(f"{legacy} is a pickle-format resume state from an older trainer; it is not read "
                         "(a pickle can run code). Start a new run in another --out directory")


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def save_student(path: Path, model: nn.Module) -> None:
    """Write ``model.state_dict()`` as an fp32 safetensors file, atomically."""
    tmp = path.with_suffix(".tmp")
    save_file(_contiguous(model.state_dict()), str(tmp))
    os.replace(tmp, path)


def _optimizer_split(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for name, value in st.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                tensors[f"optimizer.{idx}.{name}"] = value
            else:
                scalars.setdefault(str(idx), {})[name] = float(value)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _optimizer_join(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, scalars in meta["scalars"].items():
        for name, value in scalars.items():
            state.setdefault(int(idx), {})[name] = torch.tensor(value, dtype=torch.float32)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def _rng_split() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = st
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(keys.astype(np.int64))
    version, internal, gauss_next = random.getstate()
    meta = {"numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": [version, list(internal), gauss_next]}
    return tensors, meta


def _rng_join(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[f"rng.cuda.{i}"] for i in range(len(tensors)) if f"rng.cuda.{i}" in tensors]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = meta["python"]
    random.setstate((version, tuple(internal), gauss_next))


@dataclass
class ResumeState:
    """What a resume needs, read back from disk."""

    step: int
    config: dict
    student: dict[str, torch.Tensor]
    optimizer: dict
    extra: dict[str, torch.Tensor] | None
    scaler: dict
    _tensors: dict[str, torch.Tensor]
    _rng: dict

    def restore_rng(self) -> None:
        """Set the global torch / numpy / python RNG states saved with this state."""
        _rng_join(self._tensors, self._rng)


def save_state(out: Path, step: int, data_position: int, config: dict, student: nn.Module,
               opt: torch.optim.Optimizer, extra: nn.Module | None, scaler: torch.amp.GradScaler) -> None:
    """Write the resume state of ``step`` (tensor file first, then ``resume.json`` atomically)."""
    tensors = {f"student.{k}": v for k, v in student.state_dict().items()}
    if extra is not None:
        tensors.update({f"extra.{k}": v for k, v in extra.state_dict().items()})
    opt_tensors, opt_meta = _optimizer_split(opt)
    rng_tensors, rng_meta = _rng_split()
    tensors.update(opt_tensors)
    tensors.update(rng_tensors)
    name = f"state_{step:08d}.safetensors"
    tmp = out / (name + ".tmp")
    save_file(_contiguous(tensors), str(tmp))
    os.replace(tmp, out / name)
    previous = _read_json(out / RESUME_JSON).get("tensors") if (out / RESUME_JSON).exists() else None
    meta = {"format": FORMAT, "step": step, "data_position": data_position, "config": config,
            "tensors": name, "tensors_sha256": file_sha256(out / name), "optimizer": opt_meta,
            "scaler": {k: (float(v) if isinstance(v, float) else v) for k, v in scaler.state_dict().items()},
            "rng": rng_meta, "has_extra": extra is not None}
    tmp_json = out / (RESUME_JSON + ".tmp")
    tmp_json.write_text(json.dumps(meta))
    os.replace(tmp_json, out / RESUME_JSON)
    if previous and previous != name and (out / previous).exists():
        (out / previous).unlink()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read resume state {path}: {exc}") from None


def load_state(out: Path) -> ResumeState:
    """Read the resume state of run directory ``out``; ValueError if absent, legacy or inconsistent."""
    refuse_legacy_pickle(out)
    path = out / RESUME_JSON
    if not path.exists():
        raise ValueError(f"nothing to resume: {path} does not exist")
    meta = _read_json(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    tensor_path = out / Path(meta["tensors"]).name
    if not tensor_path.is_file() or file_sha256(tensor_path) != meta["tensors_sha256"]:
        raise ValueError(f"resume state {tensor_path} is missing or does not match {path}")
    tensors = load_file(str(tensor_path), device="cpu")
    student = {k[len("student."):]: v for k, v in tensors.items() if k.startswith("student.")}
    extra = {k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")} if meta["has_extra"] else None
    return ResumeState(int(meta["step"]), meta["config"], student, _optimizer_join(tensors, meta["optimizer"]),
                       extra, meta["scaler"], tensors, meta["rng"])
