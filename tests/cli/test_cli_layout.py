"""`cli.py` is a thin entry point: every command registered once, and `--help` without heavy imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import cli
from cli_commands.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = {"bench", "calibrate-iou-head", "convert", "demo", "distill", "eval", "info", "minisa", "quantize", "segment", "verify"}


def test_every_command_is_registered_under_its_name() -> None:
    assert set(cli.main.commands) == COMMANDS
    assert set(cli.main.commands["eval"].commands) == {"coco", "points"}
    assert cli.UserError is UserError


def test_help_lists_every_command_and_debug() -> None:
    res = CliRunner().invoke(cli.main, ["--help"])
    assert res.exit_code == 0, res.output
    listed = {line.split()[0] for line in res.output.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == COMMANDS
    assert "--debug" in res.output


def test_help_imports_no_heavy_package() -> None:
    code = ("import sys, runpy; sys.argv = ['cli.py', '--help']\n"
            "try:\n    runpy.run_path('cli.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'numpy', 'converters', 'tinysam', 'evaluation', 'bench', "
            "'calibration_data') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "Usage: cli.py" in out
    assert out.strip().splitlines()[-1] == "HEAVY []"


def test_unexpected_error_is_one_line_unless_debug(tmp_path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    args = ["minisa", "--out", str(blocker / "sub"), "--images", "1", "--size", "32"]
    res = CliRunner().invoke(cli.main, args)
    assert res.exit_code == 1
    assert res.output.startswith("Error: ") and res.output.count("\n") == 1
    assert "Not a directory" in res.output
    res = CliRunner().invoke(cli.main, ["--debug", *args])
    assert isinstance(res.exception, NotADirectoryError)
