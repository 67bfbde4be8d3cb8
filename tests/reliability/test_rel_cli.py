"""Every CLI command: usage errors exit 2, failures exit 1, each with one `Error:` line and no
traceback unless `--debug` (tests/cli/test_cli_segment.py covers `segment`'s own options in depth)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from rel_helpers import assert_one_line_failure

from cli import main

ROOT = Path(__file__).resolve().parents[2]


def leaf_commands(group: click.Group = main, prefix: tuple[str, ...] = ()) -> dict[str, click.Command]:
    """'eval coco' -> command, for every runnable command under `group`."""
    out = {}
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out.update(leaf_commands(cmd, prefix + (name,)))
        else:
            out[" ".join(prefix + (name,))] = cmd
    return out


COMMANDS = leaf_commands()


def _failure_args(tmp: Path) -> dict[str, list[str]]:
    """Per command: well-formed options that must fail fast with exit 1 (nothing heavy runs)."""
    return {
        "convert": ["--model", "no_such_model", "--target", "onnx", "--out", str(tmp / "c")],
        "verify": [str(tmp / "no_package")],
        "segment": ["--image", str(tmp / "missing.png"), "--point", "1,1", "--out", str(tmp / "s")],
        "eval coco": ["--images", str(tmp), "--annotations", str(tmp / "gt.json"), "--boxes", str(tmp / "b.json"),
                      "--out", str(tmp / "r.json")],
        "eval points": ["--images", str(tmp), "--annotations", str(tmp / "gt.json"), "--out", str(tmp / "r.json")],
        "distill": ["--data", str(tmp / "no_data"), "--stage", "gt", "--out", str(tmp / "d")],
        "info": ["--model", "no_such_model"],
        "demo": ["--model", "no_such_model", "--target", "onnx", "--out", str(tmp / "demo")],
        "bench": ["--suites", "no_such_suite", "--out", str(tmp / "bench")],
        "minisa": ["--out", "/dev/null/minisa", "--images", "1", "--size", "32"],  # not a directory
        "quantize": ["--model", "no_such_model", "--out", str(tmp / "q")],
        "calibrate-iou-head": ["--checkpoint", str(tmp / "missing.safetensors"), "--data", str(tmp / "no_data"),
                               "--out", str(tmp / "c.safetensors")],
    }


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_every_command_has_a_failure_case(tmp_path) -> None:
    missing = sorted(set(COMMANDS) - set(_failure_args(tmp_path)))
    assert not missing, f"add a fast failing invocation for {missing} to _failure_args"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_unknown_option_is_usage_error(name: str) -> None:
    res = run(*name.split(), "--no-such-option")
    assert_one_line_failure(res, code=2)
    assert "No such option" in res.output


@pytest.mark.parametrize("name", sorted(n for n, c in COMMANDS.items()
                                        if any(p.required for p in c.params) or n == "info"))
def test_missing_required_input_is_usage_error(name: str) -> None:
    res = run(*name.split())
    assert_one_line_failure(res, code=2)


@pytest.mark.parametrize("name", sorted(n for n, c in COMMANDS.items()
                                        if any(getattr(p, "name", "") == "image_size" for p in c.params)))
def test_wrong_option_type_is_usage_error(name: str) -> None:
    res = run(*name.split(), "--image-size", "big")
    assert_one_line_failure(res, code=2)
    assert "'big' is not a valid integer" in res.output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_failure_is_one_line_exit_1(name: str, tmp_path) -> None:
    before = sorted(p.name for p in tmp_path.iterdir())
    res = run(*name.split(), *_failure_args(tmp_path)[name])
    assert_one_line_failure(res, code=1)
    if name != "bench":  # bench writes into its results directory, by design
        assert sorted(p.name for p in tmp_path.iterdir()) == before, "a failed command left files"


def _not_a_package(tmp_path: Path) -> Path:
    """A directory whose manifest.json is valid JSON but not an object: an unexpected error inside."""
    bad = tmp_path / "bad_pkg"
    bad.mkdir()
    (bad / "manifest.json").write_text("[1, 2]")
    return bad


def test_debug_shows_the_traceback(tmp_path) -> None:
    bad = _not_a_package(tmp_path)
    assert_one_line_failure(run("verify", str(bad)), code=1)
    res = run("--debug", "verify", str(bad))
    assert res.exit_code == 1 and res.exception is not None and not isinstance(res.exception, SystemExit)


def test_real_process_exit_codes_and_stderr(tmp_path) -> None:
    """The installed entry point as a user runs it: exit codes, one stderr line, traceback only with --debug."""
    bad = _not_a_package(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True,
                              env=env, timeout=120, cwd=tmp_path)

    usage = cli("segment", "--out", str(tmp_path / "o"))
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
    assert [line for line in usage.stderr.splitlines() if line.startswith("Error:")] == [
        "Error: Missing option '--image'."]
    fail = cli("verify", str(bad))
    assert fail.returncode == 1 and fail.stdout == ""
    assert fail.stderr.count("\n") == 1 and fail.stderr.startswith("Error: ") and "Traceback" not in fail.stderr
    debug = cli("--debug", "verify", str(bad))
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
