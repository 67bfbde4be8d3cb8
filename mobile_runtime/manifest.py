"""Package manifests: load, verify (format version, hashes, paths) and safe `.zip` extraction.

A package is a directory with `manifest.json` (format_version 1, see docs/interfaces.md). Every file
listed in `files` must exist inside the directory and match its sha256; a model that is a directory
(an `.mlpackage`) is covered by its listed member files.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

SUPPORTED_FORMAT_VERSIONS = (1,)
MAX_ZIP_TOTAL_BYTES = 4 * 1024**3  # 4 GiB uncompressed
MAX_ZIP_RATIO = 200.0  # uncompressed / compressed, per member and overall
_CHUNK = 1 << 20


class PackageError(ValueError):
    """A package that cannot be trusted or read (bad manifest, hash mismatch, unsafe path)."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of one file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def entry_sha256(files: dict[str, str], entry: str) -> str:
    """Hash of one model entry from the `files` map: the file's sha256, or for a directory
    (an .mlpackage) the sha256 of its sorted "<path> <sha256>\\n" lines."""
    if entry in files:
        return files[entry]
    lines = [f"{k} {v}\n" for k, v in sorted(files.items()) if k.startswith(entry.rstrip("/") + "/")]
    if not lines:
        raise PackageError(f"model entry {entry!r} is not listed (and hashed) in files")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def safe_member_path(root: Path, name: str) -> Path:
    """Resolve a relative path inside `root`, refusing absolute paths and escapes (`..`, symlinks)."""
    if not isinstance(name, str) or not name:
        raise PackageError(f"invalid path {name!r} in package")
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise PackageError(f"absolute path {name!r} in package")
    if any(part == ".." for part in pure.parts):
        raise PackageError(f"path {name!r} escapes the package directory")
    root_resolved = root.resolve()
    target = (root_resolved / Path(*pure.parts)).resolve()
    if target != root_resolved and root_resolved not in target.parents:
        raise PackageError(f"path {name!r} escapes the package directory")
    return target


def extract_zip(zip_path: str | Path, dest: str | Path, max_total: int = MAX_ZIP_TOTAL_BYTES,
                max_ratio: float = MAX_ZIP_RATIO) -> Path:
    """Extract a package zip into `dest` safely; returns the package root (the dir holding manifest.json).

    Refuses absolute or `..` member names, symlinks, and zip bombs (total uncompressed size above
    `max_total`, or a compression ratio above `max_ratio`); sizes are checked while writing too.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as zf:
        infos = zf.infolist()
        declared = sum(i.file_size for i in infos)
        compressed = sum(i.compress_size for i in infos)
        if declared > max_total:
            raise PackageError(f"zip expands to {declared} bytes, above the {max_total} byte limit")
        if compressed and declared / max(compressed, 1) > max_ratio:
            raise PackageError(f"zip compression ratio {declared / compressed:.0f} exceeds {max_ratio:.0f}")
        written = 0
        for info in infos:
            target = safe_member_path(dest, info.filename)
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise PackageError(f"zip member {info.filename!r} is a symlink")
            if info.compress_size and info.file_size / info.compress_size > max_ratio and info.file_size > _CHUNK:
                raise PackageError(f"zip member {info.filename!r} has a compression ratio above {max_ratio:.0f}")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                while chunk := src.read(_CHUNK):
                    written += len(chunk)
                    if written > max_total or written > max(compressed, 1) * max_ratio + _CHUNK:
                        raise PackageError("zip expands beyond its declared size limits (zip bomb?)")
                    dst.write(chunk)
    manifests = sorted(dest.rglob("manifest.json"), key=lambda p: len(p.parts))
    if not manifests:
        raise PackageError(f"{zip_path} contains no manifest.json")
    return manifests[0].parent


def read_manifest_json(package_dir: Path) -> dict[str, Any]:
    """Parse manifest.json of a package directory."""
    path = package_dir / "manifest.json"
    if not path.is_file():
        raise PackageError(f"{package_dir} has no manifest.json")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PackageError(f"manifest.json is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PackageError("manifest.json must hold a JSON object")
    return data


def check_format_version(data: dict[str, Any]) -> None:
    """Refuse manifests of an unknown format version."""
    version = data.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise PackageError(
            f"unsupported manifest format_version {version!r}; this runtime reads {list(SUPPORTED_FORMAT_VERSIONS)}"
        )


def verify_files(package_dir: Path, files: dict[str, str]) -> None:
    """Check every listed file is inside the package, exists, and matches its sha256."""
    if not isinstance(files, dict) or not files:
        raise PackageError("manifest lists no files")
    for name, expected in files.items():
        target = safe_member_path(package_dir, name)
        if not target.exists():
            raise PackageError(f"package file {name!r} is missing")
        if not target.is_file():
            raise PackageError(f"package entry {name!r} is not a regular file")
        actual = sha256_file(target)
        if not isinstance(expected, str) or actual != expected.lower():
            raise PackageError(f"sha256 mismatch for {name!r}: manifest {expected}, file {actual}")


def decoder_variants(decoder: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """K (prompts per call) -> {"file", "signature", ...} of the decoder, from `models.decoder`.

    `variants` is the contract: each variant names its file (ONNX/CoreML: one file per K) and/or a
    signature (LiteRT: signatures of one file); a variant without `file` uses the decoder's
    top-level `file`. A decoder without `variants` is one K=1 model in `file`.
    """
    if not isinstance(decoder, dict):
        raise PackageError("models.decoder must be an object")
    raw = decoder.get("variants") or {"1": {}}
    if not isinstance(raw, dict):
        raise PackageError("models.decoder.variants must map K to {file, signature}")
    out: dict[int, dict[str, Any]] = {}
    for key, spec in raw.items():
        try:
            k = int(key)
        except (TypeError, ValueError):
            raise PackageError(f"models.decoder.variants key {key!r} is not a prompt count") from None
        if k < 1 or not isinstance(spec, dict):
            raise PackageError(f"models.decoder.variants[{key!r}] must be an object for K >= 1")
        name = spec.get("file") or decoder.get("file")
        if not name:
            raise PackageError(f"models.decoder variant K={k} names no file (and the decoder has no file)")
        out[k] = {**spec, "file": name, "signature": spec.get("signature")}
    return out


def _check_referenced(package_dir: Path, data: dict[str, Any]) -> None:
    """Every model file the manifest points at must be covered by `files` (hence verified), and any
    `sha256` the model entries carry must agree with it."""
    files = data["files"]
    models = data.get("models", {})
    for part in ("encoder", "decoder"):
        if part not in models:
            raise PackageError(f"manifest has no models.{part}")
    encoder = models["encoder"]
    if not isinstance(encoder, dict) or not encoder.get("file"):
        raise PackageError("models.encoder names no file")
    entries = [encoder, *decoder_variants(models["decoder"]).values()]
    if models["decoder"].get("file"):
        entries.append(models["decoder"])
    for part in ("decoder_prep", "decoder_fast"):  # the split decoder, when the package holds one
        if isinstance(models.get(part), dict):
            entries += [*decoder_variants(models[part]).values()]
    for entry in entries:
        name = entry["file"]
        safe_member_path(package_dir, name)
        digest = entry_sha256(files, name)
        if entry.get("sha256") and str(entry["sha256"]).lower() != digest:
            raise PackageError(f"sha256 mismatch for {name!r}: the manifest entry says {entry['sha256']}, "
                               f"files say {digest}")


def load_manifest(package_dir: str | Path, verify: bool = True) -> dict[str, Any]:
    """Read and verify a package directory's manifest; returns the manifest dict.

    Raises `PackageError` (a ValueError) for an unknown format_version, a missing file, a sha256
    mismatch (naming the file), or a path that is absolute or escapes the directory.
    """
    package_dir = Path(package_dir)
    if not package_dir.is_dir():
        raise PackageError(f"package directory {package_dir} does not exist")
    data = read_manifest_json(package_dir)
    check_format_version(data)
    for key in ("model", "target", "preprocess", "postprocess", "prompts", "models", "files"):
        if key not in data:
            raise PackageError(f"manifest is missing the {key!r} section")
    check_sizes(data)
    if verify:
        verify_files(package_dir, data["files"])
    _check_referenced(package_dir, data)
    if verify:
        from .integrity import check_integrity  # digest of the manifest, paths inside model files

        check_integrity(package_dir, data)
    return data


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_sizes(data: dict[str, Any]) -> None:
    """Refuse a manifest whose preprocess.image_size, postprocess.low_res_size or prompts.slots is not
    a positive int (the runtime sizes every buffer from them)."""
    for section, key, required in (("preprocess", "image_size", True), ("postprocess", "low_res_size", False),
                                   ("prompts", "slots", False)):
        part = data.get(section)
        if not isinstance(part, dict):
            raise PackageError(f"manifest {section} must be an object")
        if key not in part and not required:
            continue
        if not _positive_int(part.get(key)):
            raise PackageError(f"manifest {section}.{key} must be a positive int, got {part.get(key)!r}")


def is_zip(path: str | Path) -> bool:
    """True for a `.zip` file path."""
    path = Path(path)
    return path.is_file() and (path.suffix.lower() == ".zip" or zipfile.is_zipfile(path))


def package_root(path: str | Path, tmp_dir: str | os.PathLike | None) -> Path:
    """Directory of a package given as a directory or a `.zip` (extracted into tmp_dir)."""
    if is_zip(path):
        if tmp_dir is None:
            raise PackageError("a temporary directory is needed to open a zipped package")
        return extract_zip(path, tmp_dir)
    return Path(path)
