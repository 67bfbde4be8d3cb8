"""The trainer never unpickles: a planted pickle in a run folder is refused and its payload never runs;
every file a run writes is JSON, JSON lines, safetensors or .npy without objects."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest

from tinysam.distill import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]


class _Payload:
    """Unpickling this creates the marker file (what a hostile last.pt would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def _plant(run: Path, marker: Path) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "last.pt").write_bytes(pickle.dumps({"step": 1, "student": _Payload(marker)}))
    # the payload really runs when unpickled (the test below could fail)
    pickle.loads((run / "last.pt").read_bytes())
    assert marker.read_text() == "pwned"
    marker.unlink()


def test_a_planted_pickle_last_pt_is_refused_and_never_runs(tmp_path, sa1b_train):
    run, marker = tmp_path / "run", tmp_path / "marker.txt"
    _plant(run, marker)
    cfg = TrainConfig(data=str(sa1b_train), out=str(run), stage="gt", image_size=64, steps=2, prompts_per_image=2,
                      progress=False, device="cpu")
    for resume in (True, False):
        with pytest.raises(ValueError, match="pickle-format resume state"):
            train(cfg, resume=resume)
    from tinysam.distill.export import student_state

    with pytest.raises(ValueError, match="pickle-format resume state"):
        student_state(run)
    with pytest.raises(ValueError, match="pickle files are not read"):
        student_state(run / "last.pt")
    assert not marker.exists()


def test_cli_refuses_the_planted_pickle_in_one_line(tmp_path, sa1b_train):
    from click.testing import CliRunner

    from cli import main

    run, marker = tmp_path / "run", tmp_path / "marker.txt"
    _plant(run, marker)
    res = CliRunner().invoke(main, ["distill", "--stage", "gt", "--data", str(sa1b_train), "--out", str(run),
                                    "--steps", "2", "--image-size", "64", "--device", "cpu", "--resume"])
    assert res.exit_code == 1 and "pickle-format" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1 and not marker.exists()


def test_a_run_writes_no_pickle(tmp_path, sa1b_train, teacher_ckpt):
    import numpy as np

    run = tmp_path / "run"
    cfg = TrainConfig(data=str(sa1b_train), out=str(run), teacher="mobilesam", teacher_checkpoint=str(teacher_ckpt),
                      image_size=64, steps=2, prompts_per_image=2, progress=False, device="cpu", checkpoint_every=1)
    train(cfg)
    files = [p for p in run.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} <= {".json", ".jsonl", ".safetensors", ".npy"}, files
    assert len(list(run.glob("state_*.safetensors"))) == 1  # the previous step's tensor file is gone
    for npy in run.rglob("*.npy"):
        np.load(npy, allow_pickle=False)


def test_distill_sources_never_unpickle():
    pattern = re.compile(r"torch\.load|pickle\.|allow_pickle\s*=\s*True|weights_only\s*=\s*False")
    hits = [f"{p.name}:{i}" for p in sorted((ROOT / "tinysam" / "distill").glob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert hits == []
