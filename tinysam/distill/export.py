"""Ship a trained student: fp16 safetensors in the official key layout plus a JSON sidecar.

The file loads strictly with ``build_sam(name, path, image_size=...)``: the keys are the model's own
``state_dict`` keys, and ``load_state_dict`` casts the fp16 tensors into the fp32 model. Integer
buffers (BatchNorm ``num_batches_tracked``) keep their dtype.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


def student_state(run_or_file: str | Path) -> tuple[dict[str, torch.Tensor], int | None]:
    """(state_dict, step) of a run directory (``student.safetensors``, else the resume state) or of a
    ``.safetensors`` file. Nothing is unpickled: a pickle (``.pt``, ``.pth``, an old ``last.pt``) is refused."""
    from safetensors.torch import load_file

    from .resume_state import STUDENT_FILE, load_state, refuse_legacy_pickle

    path = Path(run_or_file)
    if path.is_dir():
        if (path / STUDENT_FILE).is_file():
            return load_file(str(path / STUDENT_FILE)), None
        refuse_legacy_pickle(path)
        state = load_state(path)
        return state.student, state.step
    if path.suffix != ".safetensors":
        raise ValueError(f"{path} is not a .safetensors file; pickle files are not read (a pickle can run code)")
    if not path.is_file():
        raise ValueError(f"{path} does not exist")
    return load_file(str(path)), None


def export_fp16(state: dict[str, torch.Tensor], out: str | Path, meta: dict) -> Path:
    """Write ``out`` (.safetensors, floating tensors as fp16) and ``out``'s ``.json`` sidecar ``meta``.

    ``meta`` must name ``model`` and ``image_size`` (the project's default-weights rule reads them).
    """
    from safetensors.torch import save_file

    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"output must end in .safetensors, got {out.name}")
    for key in ("model", "image_size"):
        if key not in meta:
            raise ValueError(f"weights description needs {key!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    save_file(tensors, str(out))
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return out
