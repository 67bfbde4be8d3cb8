"""Write outputs whole or not at all, and never destroy what was there.

`replaced_atomically(final, overwrite, inputs)` yields a temporary sibling directory; on success it is
moved into place (an existing output is replaced only with `overwrite`: moved aside first, swapped,
then deleted, so a failed swap restores it); on an error, Ctrl-C or SIGTERM the temporary directory
is removed and `final` is left as it was. Without `overwrite` an existing output is never touched,
even one that another run created meanwhile (the move then fails and says so).

`check_out_path` refuses outputs that resolve to the current directory, one of its parents, or an
input of the same command (or a directory holding one). Outputs get the user's umask permissions,
not the private 0700/0600 of `tempfile`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path


class Terminated(BaseException):
    """Raised by the SIGTERM handler of `sigterm_raises` so that cleanup code runs."""


def umask() -> int:
    """The process umask (read without changing it for longer than one call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fix_mode(path: str | Path, directory: bool | None = None) -> None:
    """Give a `tempfile`-made file (0600) or directory (0700) the mode the umask gives new ones."""
    path = Path(path)
    is_dir = path.is_dir() if directory is None else directory
    os.chmod(path, (0o777 if is_dir else 0o666) & ~umask())


def fix_tree_modes(root: str | Path) -> None:
    """`fix_mode` for `root` and everything under it (tools such as coremltools copy their private
    temporary files, 0600/0700, into outputs); symlinks are left alone."""
    root = Path(root)
    fix_mode(root, directory=True)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            if not os.path.islink(os.path.join(dirpath, name)):
                fix_mode(os.path.join(dirpath, name), directory=True)
        for name in filenames:
            if not os.path.islink(os.path.join(dirpath, name)):
                fix_mode(os.path.join(dirpath, name), directory=False)


def check_out_path(out: str | Path, inputs: Iterable[str | Path | None] = ()) -> Path:
    """Refuse an output path that is the current directory, a parent of it, or an input (or holds one)."""
    out = Path(out)
    resolved = out.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise ValueError(f"--out {out} is the current directory or one of its parents; choose a new directory")
    for item in inputs:
        if item is None:
            continue
        src = Path(item).resolve()
        if resolved == src or resolved in src.parents:
            raise ValueError(f"--out {out} is (or holds) the input {item}; choose another output path")
    return out


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """In the main thread, turn SIGTERM into `Terminated` (then exit 143) so `finally` blocks clean up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _on_term(signum, frame) -> None:  # noqa: ARG001
        raise Terminated("terminated by SIGTERM")

    old = signal.signal(signal.SIGTERM, _on_term)
    try:
        yield
    except Terminated as exc:
        raise SystemExit(143) from exc
    finally:
        signal.signal(signal.SIGTERM, old)


def move_into_place(new: Path, final: Path, overwrite: bool) -> None:
    """Rename `new` to `final`. An existing `final` is replaced only with `overwrite` (moved aside, swapped,
    then deleted; restored if the swap fails); without it an existing non-empty `final` raises ValueError."""
    exists = final.exists() or final.is_symlink()
    if exists and not overwrite:
        if not (final.is_dir() and not final.is_symlink() and not any(final.iterdir())):
            raise ValueError(f"{final} was created by someone else while this run was writing; "
                             "it was left untouched and this run's result discarded")
    if not exists or not overwrite:
        try:
            os.rename(new, final)  # fails when another run filled `final` meanwhile
        except OSError:
            raise ValueError(f"{final} was created by someone else while this run was writing; "
                             "it was left untouched and this run's result discarded") from None
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent)) / final.name
    try:
        os.rename(final, trash)
        try:
            os.rename(new, final)
        except BaseException:
            os.rename(trash, final)
            raise
    finally:
        shutil.rmtree(trash.parent, ignore_errors=True)


@contextlib.contextmanager
def replaced_atomically(final: str | Path, overwrite: bool = False,
                        inputs: Iterable[str | Path | None] = ()) -> Iterator[Path]:
    """Yield a temporary directory next to ``final``; on success it becomes ``final`` (see the module doc).

    Raises ValueError up front when ``final`` exists (and is not an empty directory) without
    `overwrite`, or when `check_out_path` refuses it."""
    final = Path(final)
    check_out_path(final, inputs)
    if (final.exists() or final.is_symlink()) and not overwrite:
        if not (final.is_dir() and not any(final.iterdir())):
            raise ValueError(f"{final} already exists (pass --overwrite to replace it)")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        with sigterm_raises():
            yield tmp
            fix_tree_modes(tmp)
            move_into_place(tmp, final, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
