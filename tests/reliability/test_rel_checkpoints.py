"""Hostile and broken checkpoints: never executed, always one clear error (loader and CLI).

Already covered in tests/tinysam/test_checkpoint.py: truncated/empty/directory/unknown suffix at the
reader, wrong-model and shape-mismatch messages, NaN warning. Here: code-executing pickles (proved
not to run), permission errors on a root machine, Inf weights, and every case through `build_sam`
and `cli.py segment`.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from rel_helpers import assert_one_line_failure, payload, zip_payload

import tinysam
import tinysam.checkpoint as ckpt_mod
from cli import main
from tinysam.checkpoint import CheckpointError, NonFiniteWeightsWarning, load_state_dict_into, read_state_dict


def _legacy_pickle(path: Path, marker: Path) -> Path:
    """A raw pickle (the pre-zip torch format) whose loading would run a shell command."""
    path.write_bytes(payload(marker))
    return path


@pytest.mark.parametrize("writer", [_legacy_pickle, zip_payload])
def test_code_executing_pickle_is_refused_without_running(tmp_path, writer) -> None:
    marker = tmp_path / "pwned"
    path = writer(tmp_path / "evil.pth", marker)
    with pytest.raises(CheckpointError, match="pickled Python objects|corrupt"):
        read_state_dict(path)
    with pytest.raises(CheckpointError):
        tinysam.build_sam("tinysam", path, image_size=128)
    assert not marker.exists(), "unpickling ran attacker code"


def test_exploit_is_real(tmp_path) -> None:
    """The exploit used above does run under a plain unpickler (so the refusal test can fail)."""
    marker = tmp_path / "pwned"
    pickle.loads(payload(marker))  # noqa: S301 - deliberate, on our own bytes
    assert marker.exists()


def test_code_executing_pickle_through_cli(tmp_path, rel_image_path) -> None:
    marker = tmp_path / "pwned"
    path = zip_payload(tmp_path / "evil.pth", marker)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["segment", "--image", str(rel_image_path), "--image-size", "128",
                                    "--checkpoint", str(path), "--point", "5,5", "--out", str(out)])
    assert_one_line_failure(res)
    assert "pickled Python objects" in res.output
    assert not marker.exists() and not out.exists()


def test_permission_denied_is_one_clear_error(tmp_path, monkeypatch) -> None:
    """Root reads any file, so the failing `open` is injected; the loader must turn the OSError
    into a CheckpointError naming the file."""
    path = tmp_path / "locked.pth"
    torch.save({"w": torch.zeros(1)}, path)
    real_open = open

    def deny(file, mode="r", *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(ckpt_mod, "open", deny, raising=False)
    with pytest.raises(CheckpointError, match=r"locked.pth cannot be read \(Permission denied\)"):
        read_state_dict(path)


def test_inf_weights_refused_unless_allowed() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2))
    bad = {k: v.clone() for k, v in model.state_dict().items()}
    bad["0.weight"][0, 1] = float("inf")
    bad["1.bias"][0] = float("-inf")
    with pytest.raises(CheckpointError, match=r"2 tensor\(s\): 0.weight, 1.bias.*--allow-nonfinite-weights"):
        load_state_dict_into(model, bad)
    assert torch.isfinite(model[0].weight).all()
    with pytest.warns(NonFiniteWeightsWarning, match=r"2 tensor\(s\): 0.weight, 1.bias"):
        load_state_dict_into(model, bad, allow_nonfinite=True)
    assert torch.isinf(model[0].weight[0, 1])


def _write_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (checkpoint path, words the one-line error must contain)."""
    full = tmp_path / "full.pth"
    torch.save({f"w{i}": torch.randn(64, 64) for i in range(4)}, full)
    cases = {}
    (tmp_path / "empty.pth").write_bytes(b"")
    cases["empty"] = (tmp_path / "empty.pth", "empty")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    cases["truncated"] = (cut, "truncated")
    (tmp_path / "adir.pth").mkdir()
    cases["directory"] = (tmp_path / "adir.pth", "directory")
    cases["wrong architecture"] = (full, "does not fit model 'tinysam'")
    return cases


def test_broken_checkpoints_through_cli_segment(tmp_path, rel_image_path) -> None:
    """Each one exits 1 with one line naming the problem and writes nothing (the right-keys/wrong-shape
    message is checked in tests/tinysam/test_checkpoint.py)."""
    for name, (path, words) in _write_cases(tmp_path).items():
        out = tmp_path / f"out_{name.replace(' ', '_')}"
        res = CliRunner().invoke(main, ["segment", "--image", str(rel_image_path), "--image-size", "128",
                                        "--checkpoint", str(path), "--point", "5,5", "--out", str(out)])
        assert_one_line_failure(res)
        assert words in res.output, (name, res.output)
        assert not out.exists(), name
