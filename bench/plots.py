"""PNG plots of accuracy against encoder latency and against package size, one point per variant."""

from __future__ import annotations

from pathlib import Path


def variant_points(latency: dict | None, sizes: dict | None, accuracy: dict | None,
                   torch_bytes: int | None) -> list[dict]:
    """Join the suites on (backend, precision): label, encoder seconds, model MB, mIoU per protocol."""
    if not accuracy:
        return []
    enc = {(r["backend"], r["precision"]): r for r in (latency or {}).get("rows", []) if r["part"] == "encoder"}
    from bench.latency import backend_label

    size = {(backend_label(r["target"]), r["precision"]): r["model_bytes"] for r in (sizes or {}).get("rows", [])}
    if torch_bytes:
        size[("torch", "fp32")] = torch_bytes
    pts = []
    for r in accuracy["rows"]:
        key = (r["backend"], r["precision"])
        e = enc.get(key)
        pts.append({"label": f"{key[0]} {key[1]}", "encoder_s": None if e is None or e["correctness_only"]
                    else e["median_s"], "size_mb": size[key] / 1e6 if key in size else None,
                    "miou_1pt": r["miou_1pt"], "miou_3pt": r["miou_3pt"], "miou_box": r["miou_box"]})
    return pts


def plot_tradeoffs(points: list[dict], out_path: Path, title: str) -> Path | None:
    """Two panels (mIoU vs encoder latency, mIoU vs size); None when there is nothing to plot."""
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    styles = (("miou_1pt", "o", "1 point"), ("miou_3pt", "s", "3 points"), ("miou_box", "^", "box"))
    for ax, xkey, xlabel in ((axes[0], "encoder_s", "image encoder median latency (s)"),
                             (axes[1], "size_mb", "package model files (MB)")):
        shown = [p for p in points if p[xkey] is not None]
        for key, marker, name in styles:
            ax.scatter([p[xkey] for p in shown], [p[key] for p in shown], marker=marker, label=name, alpha=0.8)
        for p in shown:
            ax.annotate(p["label"], (p[xkey], p["miou_box"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mIoU")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, out_path)


def plot_latency(latency: dict | None, out_path: Path, title: str) -> Path | None:
    """Bar chart of the speed-up vs torch eager fp32 per variant and part (emulator rows left out)."""
    rows = [r for r in (latency or {}).get("rows", []) if not r["correctness_only"]]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = sorted({r["part"] for r in rows})
    variants = sorted({(r["backend"], r["precision"]) for r in rows}, key=lambda v: (v[0] != "torch", v))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(variants)), 4.5))
    width = 0.8 / len(parts)
    for i, part in enumerate(parts):
        vals = {(r["backend"], r["precision"]): r["speedup_vs_torch_fp32"] for r in rows if r["part"] == part}
        ax.bar([j + i * width for j in range(len(variants))], [vals.get(v) or 0 for v in variants], width, label=part)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(variants))])
    ax.set_xticklabels([f"{b}\n{p}" for b, p in variants], fontsize=8)
    ax.set_ylabel("speed-up vs torch eager fp32 (same run)")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return _save(fig, out_path)


def _save(fig, out_path: Path) -> Path:  # noqa: ANN001 - a matplotlib Figure
    """Lay out, write `fig` as a PNG at `out_path` (creating its folder) and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path
