"""Markdown tables of the split-decoder bench (`bench/decoder_split.py`) and the everything-mode suite
(`bench/everything_suite.py`), for BENCHMARKS.md and docs/everything.md."""

from __future__ import annotations


def _f(x, fmt: str) -> str:  # noqa: ANN001
    return "-" if x is None else fmt.format(x)


def _table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def decoder_split_md(res: dict) -> str:
    """ms per prompt of the full and split decoders per runtime and K, with the share of the matmul peak."""
    rows = []
    for rt, entry in res.get("runtimes", {}).items():
        for key, r in entry["variants"].items():
            per = "per image" if key == "prep" else "per prompt"
            rows.append([rt, key, r["k"], _f(r["median_ms"], "{:.1f}"), f"{r['ms_per_prompt']:.2f} ({per})",
                         _f(r.get("peak_share"), "{:.1%}")])
    macs = res.get("macs", {})
    text = _table(["runtime", "variant", "K", "median ms per call", "ms", "share of fp32 peak"], rows)
    text += (f"\n\nImage size {res.get('image_size')}, {res.get('threads')} threads, {res.get('repeats')} interleaved "
             f"rounds (medians). MACs (torch FlopCounter, matmul + conv): full decoder "
             f"{macs.get('full_per_prompt', 0) / 1e9:.2f} G per prompt, split decoder "
             f"{macs.get('split_per_prompt', 0) / 1e9:.2f} G per prompt + prep {macs.get('prep_per_image', 0) / 1e9:.2f} "
             f"G per image; peak {_f(res.get('peak_gflops'), '{:.1f}')} GFLOP/s.")
    for rt, entry in res.get("runtimes", {}).items():
        text += (f"\n\n{rt}: best full {entry['best_full']}, best split {entry['best_split']}: "
                 f"{entry['speedup_best']:.2f}x fewer ms per prompt.")
        prof = entry.get("profile_ms_by_op")
        if prof:
            for key, ops in prof.items():
                total = sum(ops.values()) or 1.0
                top = ", ".join(f"{op} {ms / total:.0%}" for op, ms in list(ops.items())[:6])
                text += f"\n- {rt} {key} time by op type (profiler): {top}"
    return text


def everything_suite_md(res: dict) -> str:
    """The suite's summary (speed-up and agreement per filters / backend / decoder) and its per-run stage times."""
    head = ["filters", "backend", "decoder", "images", "dense masks", "hier. masks", "dense s", "hier. s",
            "speed-up", "recall@0.5", "matched mIoU"]
    rows = [[s["filters"], s["backend"], s["decoder"] or "-", f"{s['images']} ({s['scope']})",
             s.get("dense_masks", "-"), s.get("hierarchical_masks", "-"), _f(s.get("dense_seconds"), "{:.1f}"),
             _f(s.get("hierarchical_seconds"), "{:.1f}"), _f(s.get("speedup"), "{:.2f}x"),
             _f(s.get("recall"), "{:.3f}"), _f(s.get("matched_miou"), "{:.3f}")] for s in res.get("summary", [])]
    text = _table(head, rows)
    stage_head = ["image", "filters", "backend", "decoder", "mode", "prompts", "calls", "masks", "encoder s",
                  "prep s", "decoder s", "post s", "NMS s", "RLE s", "total s", "recall", "mIoU"]
    stage_rows = [[r["image"], r["filters"], r["backend"], r["decoder"] or "-", r["mode"],
                   r.get("prompts_decoded", "-"), r.get("decoder_calls", "-"), r["masks"],
                   *(_f(r.get(k), "{:.2f}") for k in ("encoder_seconds", "prep_seconds", "decoder_seconds",
                                                       "postprocess_seconds", "nms_seconds", "rle_seconds")),
                   _f(r.get("seconds"), "{:.2f}"), _f(r.get("recall"), "{:.3f}"), _f(r.get("matched_miou"), "{:.3f}")]
                  for r in res.get("runs", [])]
    filters = "; ".join(f"{k}: {v}" for k, v in res.get("filters", {}).items())
    return (text + f"\n\nWeights {res.get('weights')} at {res.get('image_size')} px, {res.get('threads')} threads; "
            f"filters {filters}; agreement against the dense result of the same backend (recall of dense masks at "
            f"IoU >= {res.get('match_iou')}, mean IoU of the matched ones).\n\n<details><summary>Every run"
            "</summary>\n\n" + _table(stage_head, stage_rows) + "\n\n</details>")


def stage_times_md(res: dict) -> str:
    """Everything mode per image by stage on one (1024 px) package."""
    head = ["image", "mode", "decoder", "prompts", "calls", "masks", "encoder s", "prep s", "decoder s", "post s",
            "NMS s", "RLE s", "total s"]
    rows = [[r["image"], r["mode"], r["decoder"], r["prompts_decoded"], r["decoder_calls"], r["masks"],
             *(_f(r.get(k), "{:.2f}") for k in ("encoder_seconds", "prep_seconds", "decoder_seconds",
                                                 "postprocess_seconds", "nms_seconds", "rle_seconds", "seconds"))]
            for r in res.get("runs", [])]
    return _table(head, rows) + (f"\n\nPackage {res.get('package')} ({res.get('image_size')} px), "
                                 f"{res.get('threads')} threads, filters {res.get('filters')}.")
