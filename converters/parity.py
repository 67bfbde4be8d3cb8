"""Parity: run an exported package in its real runtime and compare with the PyTorch reference.

One routine, `check_parity`, feeds the same photos and prompts (`converters.parity_data`) to the
package (end to end: the package's own embedding goes into the package's decoder) and to the
`tinysam` model, and reports
embedding relative error, low-res logit max error, mask IoU mean/min at threshold 0 and the
IoU-prediction error, with pass/fail against the thresholds of the package's precision.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from converters.parity_data import (
    ParityImage,
    fast_parity_prompts,
    load_parity_images,
    parity_prompts,
    prepare_image,
)
from converters.spec import FAKE_QUANT_THRESHOLDS, ExportSpec
from converters.wrappers import sam_onnx_module
from mobile_runtime.package_format import LABEL, N_SLOTS


def mask_ious(a: np.ndarray, b: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """IoU of (a > t) and (b > t) per mask over the last two axes; 1.0 when both are empty, and 0.0
    for a mask whose logits hold any NaN/Inf in either input (a comparison with NaN is False, so two
    NaN masks would otherwise "agree" as two empty masks)."""
    ma, mb = a > threshold, b > threshold
    inter = (ma & mb).sum(axis=(-2, -1))
    union = (ma | mb).sum(axis=(-2, -1))
    finite = np.isfinite(a).all(axis=(-2, -1)) & np.isfinite(b).all(axis=(-2, -1))
    return np.where(~finite, 0.0, np.where(union == 0, 1.0, inter / np.maximum(union, 1)))


def worst(current: float, value: float) -> float:
    """The larger error of the two, where NaN counts as infinitely large (`max(0, nan)` is 0)."""
    value = float(value)
    return math.inf if not math.isfinite(value) else max(current, value)


def _by_logical(entries: list[dict]) -> dict[str, str]:
    return {e.get("logical_name", e["name"]): e["name"] for e in entries}


def run_entry(model, entry: dict, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a runtime model with feeds keyed by tensor role; outputs keyed by role (the manifest `entry` maps them)."""
    names_in, names_out = _by_logical(entry["inputs"]), _by_logical(entry["outputs"])
    out = model.run({names_in[k]: v for k, v in feeds.items()})
    return {logical: out[name] for logical, name in names_out.items()}


def evaluate(thresholds: dict[str, float], metrics: dict[str, float]) -> list[str]:
    """Failures of `metrics` against `thresholds` (keys ending in _mean are minima, others maxima)."""
    fails = ([f"NaN/Inf in {metrics['nonfinite_outputs']} output(s) of the package or the reference"]
             if metrics.get("nonfinite_outputs") else [])
    for key, limit in thresholds.items():
        value = metrics.get(key)
        if value is None:
            continue
        bad = not math.isfinite(value) or (value < limit if key.startswith("mask_iou") else value > limit)
        if bad:
            fails.append(f"{key} = {value:.6g} (limit {limit:g})")
    return fails


def _split_outputs(model, models: dict, split: tuple, emb: np.ndarray, img: ParityImage) -> list[tuple]:
    """(K, feeds in N_SLOTS slots, outputs) of every split-decoder variant on one photo (prep run once)."""
    prep_model, fast_models = split
    prepped = run_entry(prep_model, models["decoder_prep"], {"image_embeddings": emb.astype(np.float32)})
    slots = models["decoder_fast"].get("slots", N_SLOTS)
    out, prompts = [], 0
    for k, m in fast_models.items():
        feeds = fast_parity_prompts(model, k, img.original_size, offset=prompts)
        small = {n: feeds[n][:, :slots] for n in ("point_coords", "point_labels")}
        t0 = time.perf_counter()
        got = run_entry(m, models["decoder_fast"], {**prepped, **small})
        out.append((k, feeds, got, time.perf_counter() - t0))
        prompts += k
    return out


def _package_outputs(model, spec: ExportSpec, models: dict, encoder, decoders: dict, sam_sess,
                     img: ParityImage, split: tuple | None = None) -> dict:
    """The package's outputs on one photo: embedding, every decoder variant on the fixed prompts
    (fed the package's own embedding), the split decoder's variants (`split`: prep and per-prompt models),
    and the SAM-signature decoder's masks (ONNX)."""
    enc, dec = models["encoder"], models["decoder"]
    emb = run_entry(encoder, enc, {"image": img.x.numpy()})["image_embeddings"]
    variants, prompts = [], 0
    seconds: dict[str, float] = {}
    for k, m in decoders.items():
        feeds = parity_prompts(model, spec, k, img.original_size, offset=prompts)
        t0 = time.perf_counter()
        variants.append((k, feeds, run_entry(m, dec, {"image_embeddings": emb.astype(np.float32), **feeds})))
        seconds[f"full_k{k}"] = time.perf_counter() - t0
        prompts += k
    if split is not None:
        fast = _split_outputs(model, models, split, emb, img)
        variants += [(f"split K={k}", feeds, got) for k, feeds, got, _ in fast]
        seconds |= {f"split_k{k}": s for k, _, _, s in fast}
        prompts += sum(k for k, _, _, _ in fast)
    sam = _sam_onnx_outputs(model, sam_sess, emb, spec, img) if sam_sess is not None else None
    return {"embedding": emb, "variants": variants, "prompts": prompts, "sam": sam, "seconds": seconds}


def decoder_timing(outs: list[dict]) -> dict:
    """ms per prompt of each decoder variant in the parity runs (best over the photos: the first run of a model
    includes its warm-up), and whether the split decoder was the faster at the largest K both decoders have
    (the batch everything mode sends; one call per photo, so a loaded machine can tip a close call)."""
    keys = outs[0]["seconds"].keys()
    ms = {key: 1000 * min(o["seconds"][key] for o in outs) / int(key.rsplit("k", 1)[1]) for key in keys}
    shared = [int(k[6:]) for k in ms if k.startswith("full_k") and f"split_k{k[6:]}" in ms]
    k = max(shared, default=None)
    return {"ms_per_prompt": {key: round(v, 3) for key, v in ms.items()}, "compared_k": k,
            "prefer_split": bool(k is not None and ms[f"split_k{k}"] < ms[f"full_k{k}"]),
            "measured_on": "the converting machine, during the parity check (one call per photo)"}


def _compare(reference: torch.nn.Module, spec: ExportSpec, images: list[ParityImage], outs: list[dict]) -> dict:
    """Parity metrics of the package outputs `outs` against `reference` on the same photos and prompts."""
    emb_errs, ious, lr_err, iou_err, sam_ious, nonfinite, split_ious = [], [], 0.0, 0.0, [], [], []
    for img, out in zip(images, outs):
        with torch.no_grad():
            ref_emb = reference.encode_image(img.x)
        ref = ref_emb.numpy()
        emb_errs.append(worst(0.0, np.linalg.norm(out["embedding"] - ref) / max(np.linalg.norm(ref), 1e-12)))
        nonfinite += [f"{who} embedding of {img.name}" for who, v in (("package", out["embedding"]), ("reference", ref))
                      if not np.isfinite(v).all()]
        for k, feeds, got in out["variants"]:
            with torch.no_grad():
                lo, iou = reference.decode_prompts(ref_emb, *(torch.from_numpy(feeds[t.name]) if t.name in feeds
                                                              else None for t in spec.decoder_inputs(1)[1:]))
            ious.append(mask_ious(got["low_res_masks"], lo.numpy()).ravel())
            if isinstance(k, str):
                split_ious.append(ious[-1])
            lr_err = worst(lr_err, np.abs(got["low_res_masks"] - lo.numpy()).max())
            iou_err = worst(iou_err, np.abs(got["iou_predictions"] - iou.numpy()).max())
            nonfinite += [f"{who} K={k} decoder outputs on {img.name}" for who, v in
                          (("package", got["low_res_masks"]), ("reference", lo.numpy()),
                           ("package", got["iou_predictions"]), ("reference", iou.numpy())) if not np.isfinite(v).all()]
        if out["sam"] is not None:
            sam_ious.append(_sam_onnx_ious(reference, out["sam"], ref_emb, spec))
    all_ious = np.concatenate(ious)
    metrics: dict[str, float] = {
        "embedding_rel_error": max(emb_errs), "low_res_logit_max_error": lr_err,
        "mask_iou_mean": float(all_ious.mean()), "mask_iou_min": float(all_ious.min()),
        "iou_prediction_max_error": iou_err, "masks_compared": int(all_ious.size),
        "nonfinite_outputs": len(set(nonfinite))}
    if split_ious:
        a = np.concatenate(split_ious)
        metrics.update({"split_decoder_mask_iou_mean": float(a.mean()), "split_decoder_mask_iou_min": float(a.min()),
                        "split_decoder_masks_compared": int(a.size)})
    if sam_ious:
        a = np.concatenate(sam_ious)
        metrics.update({"sam_onnx_mask_iou_mean": float(a.mean()), "sam_onnx_mask_iou_min": float(a.min())})
    return metrics


def check_parity(model: torch.nn.Module, package_dir: Path, manifest: dict, calibration: str | Path | None = None,
                 num_threads: int = 2, fake_quant: torch.nn.Module | None = None) -> dict:
    """Run the package at `package_dir` (described by `manifest`) against `model`; returns the report.

    Inputs are real photos (2 bundled ones, or the first <= 4 images of `calibration`) prepared by the
    reference predictor's transform, and the fixed prompt set of `converters.parity_data`; every
    decoder variant runs on every photo with the package's own embedding. Missing photos raise.

    `fake_quant` (W8A8 packages): the recipe's fake-quant model of what the package holds
    (`converters.w8a8.package_reference`); packages of a target's own compression: its `Backend.fake_quant`
    model (Core AI: coreai-opt's). The package is then also compared with it, under the
    target's `FAKE_QUANT_THRESHOLDS`, in `report["fake_quant"]`; both gates must pass.
    """
    from mobile_runtime.backends import open_model

    spec = ExportSpec(model.config, manifest["target"], manifest["precision"])
    kind, models = spec.target, manifest["models"]
    images = [prepare_image(model, name, arr) for name, arr in load_parity_images(calibration)]
    enc = models["encoder"]
    encoder = open_model(package_dir / enc["file"], kind, num_threads)
    decoders = {int(k): open_model(package_dir / v["file"], kind, num_threads, signature=v.get("signature"))
                for k, v in models["decoder"]["variants"].items()}
    sam_sess = open_model(package_dir / models["sam_onnx"]["file"], "onnx") if "sam_onnx" in models else None
    split = None
    if "decoder_prep" in models:
        prep = models["decoder_prep"]
        split = (open_model(package_dir / prep["file"], kind, num_threads, signature=prep.get("signature")),
                 {int(k): open_model(package_dir / v["file"], kind, num_threads, signature=v.get("signature"))
                  for k, v in models["decoder_fast"]["variants"].items()})
    outs = [_package_outputs(model, spec, models, encoder, decoders, sam_sess, img, split) for img in images]
    metrics = _compare(model, spec, images, outs)
    thresholds = spec.thresholds
    failures = evaluate(thresholds, metrics)
    report: dict = {"metrics": metrics, "thresholds": thresholds, "reference": "float PyTorch model",
                    "decoder_timing": decoder_timing(outs)}
    if fake_quant is not None:
        fq_metrics = _compare(fake_quant, spec, images, outs)
        fq_thresholds = dict(FAKE_QUANT_THRESHOLDS[spec.target])
        fq_failures = evaluate(fq_thresholds, fq_metrics)
        failures += [f"vs fake-quant: {f}" for f in fq_failures]
        what = ("the recipe's fake-quant PyTorch model of the package's int8 layers" if spec.precision == "w8a8" else
                f"the {spec.target} compressor's own fake-quant PyTorch model of the package's compression")
        report["fake_quant"] = {"reference": what,
                                "metrics": fq_metrics, "thresholds": fq_thresholds, "passed": not fq_failures}
    report.update({"passed": not failures, "failures": failures, "runtime": kind, "image_size": spec.image_size,
                   "inputs": {"source": "bundled" if calibration is None else "calibration",
                              "images": [{"name": im.name, "original_size": list(im.original_size),
                                          "input_size": list(im.input_size)} for im in images],
                              "prompts_per_image": outs[0]["prompts"],
                              "prompts_total": outs[0]["prompts"] * len(images)}})
    return report


def _sam_onnx_feeds(model, spec: ExportSpec, emb: np.ndarray, img: ParityImage) -> list[dict[str, np.ndarray]]:
    """Feeds of the SAM-signature decoder for one photo: point, pos+neg, box, point+box."""
    names = [t.name for t in spec.sam_onnx_inputs()]
    out = []
    for index in range(4):
        f = parity_prompts(model, spec, 1, img.original_size, offset=index)
        used = f["point_labels"][0] != LABEL.EMPTY_SLOT
        feeds = {"image_embeddings": emb.astype(np.float32), "point_coords": f["point_coords"][:, used],
                 "point_labels": f["point_labels"][:, used],
                 "mask_input": np.zeros((1, 1, spec.low_res_size, spec.low_res_size), np.float32),
                 "has_mask_input": np.zeros(1, np.float32),
                 "orig_im_size": np.array(img.original_size, np.float32)}
        out.append({n: feeds[n] for n in names})
    return out


def _sam_onnx_outputs(model, sess, emb: np.ndarray, spec: ExportSpec, img: ParityImage) -> list[tuple[dict, np.ndarray]]:
    """(feeds, masks at the photo's own size) of the SAM-signature decoder on one photo."""
    return [(feeds, sess.run(feeds)["masks"]) for feeds in _sam_onnx_feeds(model, spec, emb, img)]


def _sam_onnx_ious(reference, runs: list[tuple[dict, np.ndarray]], ref_emb: torch.Tensor,
                   spec: ExportSpec) -> np.ndarray:
    """SAM-signature decoder masks vs the reference wrapper (fed the reference's own embedding)."""
    ref_dec = sam_onnx_module(reference)
    names = [t.name for t in spec.sam_onnx_inputs()]
    ious = []
    for feeds, masks in runs:
        with torch.no_grad():
            ref_masks = ref_dec(ref_emb, *(torch.from_numpy(feeds[n]) for n in names[1:]))[0]
        ious.append(mask_ious(masks, ref_masks.numpy()).ravel())
    return np.concatenate(ious)
