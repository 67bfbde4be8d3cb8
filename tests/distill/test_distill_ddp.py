"""Two processes on the CPU (torchrun, gloo): both ranks finish with identical weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_two_processes_end_with_identical_weights(tmp_path, sa1b_train, teacher_ckpt):
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).with_name("ddp_worker.py")), str(sa1b_train), str(out), str(teacher_ckpt)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2 and (r0["rank"], r1["rank"]) == (0, 1)
    assert r0["weights_sha256"] == r1["weights_sha256"]
    assert r0["step"] == 2 and (out / "student.safetensors").exists()
    # both ranks filled the shared teacher cache: every training image has an entry
    index = json.loads(next((out / "teacher_cache").glob("*/index.json")).read_text())
    assert len(index["entries"]) == 4
