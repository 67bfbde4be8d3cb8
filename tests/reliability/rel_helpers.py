"""Helpers shared by the reliability tests (CLI output checks, code-executing pickles)."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import torch


def error_lines(output: str) -> list[str]:
    """Lines of CLI output that report an error."""
    return [line for line in output.splitlines() if line.startswith("Error:")]


def assert_one_line_failure(result, code: int = 1) -> None:
    """The CLI failed with `code`, printed exactly one `Error:` line and no traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output, result.output
    assert len(error_lines(result.output)) == 1, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception


class Exploit:
    """Unpickling this creates `marker` (stands in for any code an attacker would run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def payload(marker: Path) -> bytes:
    return pickle.dumps({"weight": Exploit(marker)}, protocol=2)


def zip_payload(path: Path, marker: Path) -> Path:
    """A torch.save-style zip whose data.pkl runs the payload (valid CRCs)."""
    torch.save({"weight": torch.zeros(2)}, path)
    with zipfile.ZipFile(path) as zf:
        members = {i.filename: zf.read(i.filename) for i in zf.infolist()}
    pkl = next(n for n in members if n.endswith("data.pkl"))
    members[pkl] = payload(marker)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    path.write_bytes(buf.getvalue())
    return path
