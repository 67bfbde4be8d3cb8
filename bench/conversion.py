"""Conversion cost: each (target, precision) converted in its own subprocess, wall time and peak RSS.

The child runs `converters.api.convert` exactly as `cli.py convert` does (parity check included
unless disabled) and prints one `BENCH_RESULT {json}` line; the parent reads the child's own
resource usage with `os.wait4`, so every row's peak memory belongs to that conversion alone.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "BENCH_RESULT "


def child_command(model: str, target: str, precision: str, out_dir: Path, image_size: int | None,
                  checkpoint: str | None, verify: bool, untrained: bool = False) -> list[str]:
    """The argv of one conversion subprocess (`untrained`: ignore shipped weights, as the bench's
    reference model does)."""
    cmd = [sys.executable, "-m", "bench.conversion", "--model", model, "--target", target,
           "--precision", precision, "--out", str(out_dir)]
    if image_size is not None:
        cmd += ["--image-size", str(image_size)]
    if checkpoint is not None:
        cmd += ["--checkpoint", str(checkpoint)]
    if not verify:
        cmd.append("--no-verify")
    if untrained:
        cmd.append("--untrained")
    return cmd


def parse_child_output(stdout: str) -> dict:
    """The JSON payload of the child's last `BENCH_RESULT` line."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith(MARKER)]
    if not lines:
        raise ValueError("conversion subprocess printed no result line")
    return json.loads(lines[-1][len(MARKER):])


def run_one(cmd: list[str], timeout_s: float, log_path: Path) -> dict:
    """Run one child; wall time, max RSS (bytes, child and its waited-for children) and its result."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        timer = threading.Timer(timeout_s, lambda: os.kill(proc.pid, signal.SIGKILL))
        timer.start()
        stdout = proc.stdout.read() if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.stdout:
            proc.stdout.close()
    row = {"wall_s": wall, "max_rss_bytes": int(usage.ru_maxrss) * 1024, "exit_code": proc.returncode,
           "log": str(log_path)}
    try:
        row.update(parse_child_output(stdout))
    except (ValueError, json.JSONDecodeError):
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        killed = proc.returncode == -signal.SIGKILL
        row["error"] = f"timed out after {timeout_s:.0f} s" if killed else (" | ".join(tail) or "no output")
    return row


def run_conversions(model: str, targets: list[str], precisions: list[str], out_dir: Path,
                    image_size: int | None, checkpoint: str | None, verify: bool, log_dir: Path,
                    timeout_s: float = 3600.0, progress=None, untrained: bool = False) -> dict:  # noqa: ANN001
    """Conversion suite: one subprocess per target and precision, in order."""
    from converters.backends import get_backend

    rows = []
    for target in targets:
        for precision in precisions:
            if precision not in get_backend(target).capabilities.precisions:
                continue  # e.g. palette4 exists only for Core AI, the Q-TinySAM w8a8 not for Core AI
            if progress:
                progress(f"converting {model} -> {target}/{precision}")
            cmd = child_command(model, target, precision, out_dir, image_size, checkpoint, verify, untrained)
            row = run_one(cmd, timeout_s, log_dir / f"convert-{target}-{precision}.log")
            rows.append({"target": target, "precision": precision, "command": " ".join(cmd[1:]), **row})
    return {"rows": rows, "verify": verify}


def _child(argv: list[str] | None = None) -> int:
    """Entry of the conversion subprocess."""
    ap = argparse.ArgumentParser(description="one benchmarked conversion")
    ap.add_argument("--model", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--precision", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--untrained", action="store_true")
    a = ap.parse_args(argv)
    from converters.logs import quiet_logs

    quiet_logs()
    from converters import ConvertOptions, ParityError, convert

    try:
        res = convert(a.model, ConvertOptions(targets=a.target, precision=a.precision, out_dir=a.out,
                                              checkpoint=a.checkpoint, verify=not a.no_verify,
                                              image_size=a.image_size, untrained=a.untrained))[0]
    except (ParityError, ValueError) as exc:
        print(MARKER + json.dumps({"error": str(exc).splitlines()[0]}), flush=True)
        return 1
    metrics = res.parity.get("metrics", {}) if isinstance(res.parity, dict) else {}
    print(MARKER + json.dumps({"package": str(res.path), "size_bytes": res.size_bytes, "convert_s": res.seconds,
                               "parity_passed": res.parity.get("passed"), "parity_metrics": metrics}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child())
