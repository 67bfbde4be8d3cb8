"""What `load_manifest` checks beyond the file hashes: the manifest's own digest and the paths inside
model files.

`manifest.sha256` (written by the converter next to `manifest.json`, in `sha256sum` format) holds the
sha256 of `manifest.json`; since the manifest lists the sha256 of every other file, the digest covers
every byte of the package, preprocessing constants and mask threshold included. It is a checksum
against corruption and careless edits, not a signature: whoever can edit the manifest can recompute
it. The runtime checks it when present; `cli.py verify` requires it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .backends.registry import canonical_kind
from .manifest import PackageError, decoder_variants, sha256_file
from .model_paths import check_model_paths

DIGEST = "manifest.sha256"


def digest_line(package_dir: str | Path) -> str:
    """The `manifest.sha256` text for the package's current manifest.json."""
    return f"{sha256_file(Path(package_dir) / 'manifest.json')}  manifest.json\n"


def check_manifest_digest(package_dir: str | Path, required: bool = False) -> None:
    """Refuse a manifest.json that does not match `manifest.sha256` (or, when `required`, a missing digest)."""
    path = Path(package_dir) / DIGEST
    if not path.is_file():
        if required:
            raise PackageError(f"package has no {DIGEST}: the manifest itself is not covered by any hash")
        return
    try:
        want = path.read_text().split()[0].lower()
    except (IndexError, UnicodeDecodeError):
        raise PackageError(f"{DIGEST} does not hold a sha256") from None
    have = sha256_file(Path(package_dir) / "manifest.json")
    if want != have:
        raise PackageError(f"manifest.json does not match {DIGEST} (the manifest was edited or corrupted)")


def model_entries(data: dict[str, Any]) -> list[str]:
    """Every model file or directory the manifest's `models` section names."""
    models = data.get("models", {})
    names = [models.get("encoder", {}).get("file")]
    names += [v["file"] for v in decoder_variants(models.get("decoder", {})).values()]
    names += [m.get("file") for k, m in models.items() if k not in ("encoder", "decoder") and isinstance(m, dict)]
    if isinstance(models.get("decoder_fast"), dict):  # the split decoder's per-prompt variants
        names += [v["file"] for v in decoder_variants(models["decoder_fast"]).values()]
    return list(dict.fromkeys(n for n in names if n))


def check_integrity(package_dir: str | Path, data: dict[str, Any], require_digest: bool = False) -> None:
    """The manifest digest, then every path written inside the package's model files."""
    check_manifest_digest(package_dir, require_digest)
    try:
        kind = canonical_kind(str(data.get("target")))
    except ValueError as exc:
        raise PackageError(f"unknown package target: {exc}") from None
    for name in model_entries(data):
        check_model_paths(package_dir, name, kind)
