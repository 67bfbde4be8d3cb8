"""Deployment package assembly: manifest, README, hashes, and an all-or-nothing build.

A package is built in a hidden temporary directory next to its target, hashed, verified, and only
then renamed into place. An exception, Ctrl-C or SIGTERM at any point leaves neither the package
nor the temporary directory behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
import zipfile
from pathlib import Path

from calibration_data.atomic_dir import fix_mode, fix_tree_modes
from converters.spec import FORMAT_VERSION, MIN_OS, ExportSpec

MANIFEST = "manifest.json"
DIGEST = "manifest.sha256"  # sha256 of manifest.json (sha256sum format): covers the manifest itself
TMP_MARK = ".partial-"

# Defaults of both everything modes, so apps reproduce the reference generators.
EVERYTHING_DEFAULTS = {
    "grid": {"points_per_side": 32, "points_per_batch": 64, "pred_iou_thresh": 0.88,
             "stability_score_thresh": 0.95, "stability_score_offset": 1.0, "box_nms_thresh": 0.7,
             "min_mask_region_area": 0, "point_grid": "(k + 0.5) / n"},
    "hierarchical": {"points_per_side": 32, "first_pass_points_per_side": 8, "high_score_thresh": 8.5,
                     "pred_iou_thresh": 0.88, "stability_score_thresh": 0.95, "stability_score_offset": 1.0,
                     "box_nms_thresh": 0.7},
}


def sha256_file(path: Path) -> str:
    """Hex sha256 of one file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_tree(root: Path) -> dict[str, str]:
    """relative posix path -> sha256 for every file under `root` except the manifest and its digest."""
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            rel = p.relative_to(root).as_posix()
            if rel not in (MANIFEST, DIGEST):
                out[rel] = sha256_file(p)
    return out


def entry_sha256(files: dict[str, str], entry: str) -> str:
    """Hash of one model entry: the file's sha256, or for a directory (mlpackage) the sha256 of its
    sorted `path sha256` lines."""
    if entry in files:
        return files[entry]
    lines = [f"{k} {v}\n" for k, v in sorted(files.items()) if k.startswith(entry + "/")]
    if not lines:
        raise ValueError(f"package has no file or directory named {entry!r}")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def tool_versions() -> dict[str, str]:
    """Versions of the tools that produced the package."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "numpy", "onnx", "onnxruntime", "litert-torch", "ai-edge-litert",
                 "ai-edge-quantizer", "litert-quantizer", "coremltools", "executorch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def build_manifest(spec: ExportSpec, model_info: dict, models: dict, precision_plan: dict,
                   parity: dict, files: dict[str, str]) -> dict:
    """The manifest dict (format_version 1, see docs/interfaces.md)."""
    models = json.loads(json.dumps(models))
    for m in models.values():
        if "file" in m:
            m["sha256"] = entry_sha256(files, m["file"])
        for v in m.get("variants", {}).values():
            v["sha256"] = entry_sha256(files, v["file"])
    runtime = dict(spec.backend.capabilities.runtime_requirements)
    needs = {"runtime_requirements": runtime} if runtime else {}
    return {
        "format_version": FORMAT_VERSION,
        "model": model_info,
        "target": spec.target,
        "precision": spec.precision,
        "min_os": MIN_OS[spec.target],
        **needs,
        "preprocess": spec.preprocess_dict(),
        "postprocess": spec.postprocess_dict(),
        "prompts": spec.prompts_dict(),
        "models": models,
        "files": files,
        "everything": EVERYTHING_DEFAULTS,
        "precision_plan": precision_plan,
        "parity": parity,
        "tools": tool_versions(),
    }


def _inside(root: Path, name: str) -> bool:
    """True if relative `name` (after resolving symlinks) stays inside the resolved `root`."""
    if not isinstance(name, str) or not name or name.startswith(("/", "\\")) or ":" in name[:2]:
        return False
    target = (root / name).resolve()
    return target == root or root in target.parents


def check_hashes(path: Path, require_digest: bool = True) -> list[str]:
    """Problems found comparing the files of package `path` with its manifest (empty = fine): the
    manifest's digest (`manifest.sha256`, required unless `require_digest` is False), every file's
    sha256, unlisted files, and paths that leave the package (also inside model files)."""
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        return [f"{path} has no {MANIFEST}"]
    manifest = json.loads(mpath.read_text())
    want = manifest.get("files", {}) if isinstance(manifest, dict) else None
    if not isinstance(want, dict):
        return [f"{MANIFEST} has no 'files' map"]
    root = path.resolve()
    unsafe = [k for k in sorted(want) if not _inside(root, k)]
    unsafe += [p.relative_to(path).as_posix() for p in sorted(path.rglob("*"))
               if p.is_symlink() and not _inside(root, p.relative_to(path).as_posix())]
    if unsafe:  # never hash or load what lies outside the package
        return [f"unsafe path (leaves the package): {k}" for k in dict.fromkeys(unsafe)]
    have = hash_tree(path)
    problems = [f"missing file: {k}" for k in sorted(set(want) - set(have))]
    problems += [f"unlisted file: {k}" for k in sorted(set(have) - set(want))]
    problems += [f"hash mismatch: {k}" for k in sorted(set(want) & set(have)) if want[k] != have[k]]
    if not problems and "models" in manifest:
        from mobile_runtime.integrity import check_integrity
        from mobile_runtime.manifest import PackageError

        try:
            check_integrity(path, manifest, require_digest)
        except PackageError as exc:
            problems.append(str(exc))
    elif require_digest and not (path / DIGEST).is_file():
        problems.append(f"no {DIGEST}: the manifest itself is not covered by any hash")
    return problems


class _Terminated(BaseException):
    """Raised from the SIGTERM handler so `finally` blocks clean up."""


class AtomicPackage:
    """Context manager: `with AtomicPackage(final_dir, zip_=False) as pkg:` write into `pkg.dir`,
    then `pkg.commit()`. Leaving the block without commit (or with an exception, Ctrl-C or SIGTERM)
    removes everything that was written."""

    def __init__(self, final_dir: Path, zip_: bool = False, overwrite: bool = False):
        self.final_dir = Path(final_dir)
        self.zip_ = zip_
        self.overwrite = overwrite
        self.dir: Path = Path()
        self._tmp: Path | None = None
        self._old_handler = None
        self.committed = False

    @property
    def zip_path(self) -> Path:
        """Where the zip goes when zip_ is set."""
        return self.final_dir.with_name(self.final_dir.name + ".zip")

    def __enter__(self) -> AtomicPackage:
        parent = self.final_dir.parent
        parent.mkdir(parents=True, exist_ok=True)
        if not self.overwrite:
            for existing in (self.final_dir, *([self.zip_path] if self.zip_ else [])):
                if existing.exists() or existing.is_symlink():
                    raise ValueError(f"{existing} already exists (pass --overwrite to replace it)")
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.final_dir.name}{TMP_MARK}", dir=parent))
        self.dir = self._tmp / self.final_dir.name
        self.dir.mkdir()
        if threading.current_thread() is threading.main_thread():
            self._old_handler = signal.signal(signal.SIGTERM, self._on_term)
        return self

    @staticmethod
    def _on_term(signum, frame) -> None:  # noqa: ARG004
        raise _Terminated("terminated by SIGTERM")

    def commit(self) -> Path:
        """Write the manifest's digest, verify hashes, then move the package (and zip) into place;
        returns the final dir."""
        if (self.dir / MANIFEST).is_file():
            from mobile_runtime.integrity import digest_line

            (self.dir / DIGEST).write_text(digest_line(self.dir))
        problems = check_hashes(self.dir)
        if problems:
            raise RuntimeError(f"package self-check failed: {problems[0]}")
        assert self._tmp is not None
        fix_tree_modes(self.dir)  # exporters' private temporary modes (0600/0700) -> the user's umask
        if self.zip_:
            tmp_zip = self._tmp / self.zip_path.name
            with zipfile.ZipFile(tmp_zip, "w", zipfile.ZIP_DEFLATED) as zf:
                for p in sorted(self.dir.rglob("*")):
                    if p.is_file():
                        zf.write(p, (Path(self.final_dir.name) / p.relative_to(self.dir)).as_posix())
        from calibration_data.atomic_dir import move_into_place

        if self.zip_ and not self.overwrite and self.zip_path.exists():
            raise ValueError(f"{self.zip_path} was created by someone else while this run was writing; "
                             "it was left untouched")
        move_into_place(self.dir, self.final_dir, self.overwrite)
        if self.zip_:
            tmp_zip = self._tmp / self.zip_path.name
            fix_mode(tmp_zip, directory=False)
            os.replace(tmp_zip, self.zip_path)
        self.committed = True
        return self.final_dir

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._old_handler is not None:
            signal.signal(signal.SIGTERM, self._old_handler)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
        if isinstance(exc, _Terminated):
            raise SystemExit(143) from exc
