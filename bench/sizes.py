"""Package sizes: every file and the total, per target and precision, and the ratio to fp32."""

from __future__ import annotations

import json
from pathlib import Path


def file_sizes(package: Path) -> dict[str, int]:
    """Bytes per top-level entry of a package (an .mlpackage directory counts as one entry)."""
    package = Path(package)
    if not package.is_dir():
        raise ValueError(f"package directory {package} does not exist")
    out = {}
    for p in sorted(package.iterdir()):
        out[p.name] = p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return out


def package_row(package: Path) -> dict:
    """One size row: model files, the manifest's target/precision, the total and the model-only total."""
    package = Path(package)
    manifest = json.loads((package / "manifest.json").read_text())
    files = file_sizes(package)
    model_bytes = sum(v for k, v in files.items() if k not in ("manifest.json", "README.md"))
    return {"target": manifest["target"], "precision": manifest["precision"], "package": package.name,
            "files": files, "total_bytes": sum(files.values()), "model_bytes": model_bytes}


def with_fp32_ratios(rows: list[dict]) -> list[dict]:
    """Add `ratio_to_fp32` where fp32 exists: the whole package's bytes (what a user downloads, the plan's record
    and scales included) over the same target's fp32 package's, as `bench/ptq_goal.py` measures it."""
    fp32 = {r["target"]: r["total_bytes"] for r in rows if r["precision"] == "fp32"}
    return [{**r, "ratio_to_fp32": (r["total_bytes"] / fp32[r["target"]]) if r["target"] in fp32 else None}
            for r in rows]


def run_sizes(packages: list[Path]) -> dict:
    """Size suite over the packages that were built."""
    return {"rows": with_fp32_ratios([package_row(p) for p in packages])}
