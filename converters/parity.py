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
from dataclasses import dataclass
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
    """Run a runtime model with feeds keyed by tensor role; outputs keyed by role (the manifest `entry` maps them),
    copied: an array ONNX Runtime returns can hold on to the memory arena of its session after the session is closed
    (ONNX fp16 at 1024 px: the parity check's peak 7.9 -> 4.7 GB)."""
    names_in, names_out = _by_logical(entry["inputs"]), _by_logical(entry["outputs"])
    out = model.run({names_in[k]: v for k, v in feeds.items()})
    return {logical: np.array(out[name], copy=True) for logical, name in names_out.items()}


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


@dataclass
class ImagePrompts:
    """The prompts one photo gets: (K, feeds) of every full decoder variant and of every split-decoder variant
    (fixed by the manifest and `converters.parity_data`), and the SAM-signature decoder's feeds (without the
    embedding, which each side brings)."""

    full: list[tuple[int, dict[str, np.ndarray]]]
    split: list[tuple[int, dict[str, np.ndarray]]]
    sam: list[dict[str, np.ndarray]]

    @property
    def count(self) -> int:
        return sum(k for k, _ in self.full) + sum(k for k, _ in self.split)

    def named(self) -> list[tuple[str, dict[str, np.ndarray]]]:
        """(name, feeds) of every decoder variant, full ones first: the order of the outputs' `variants`."""
        return [(f"K={k}", f) for k, f in self.full] + [(f"split K={k}", f) for k, f in self.split]


def image_prompts(model, spec: ExportSpec, models: dict, img: ParityImage) -> ImagePrompts:  # noqa: ANN001
    """Every prompt of one photo, numbered on from one variant to the next (`offset`)."""
    full, split, prompts = [], [], 0
    for k in map(int, models["decoder"]["variants"]):  # manifest order: the prompts are numbered on across variants
        full.append((k, parity_prompts(model, spec, k, img.original_size, offset=prompts)))
        prompts += k
    if "decoder_prep" in models:
        for k in map(int, models["decoder_fast"]["variants"]):
            split.append((k, fast_parity_prompts(model, k, img.original_size, offset=prompts)))
            prompts += k
    sam = _sam_onnx_feeds(model, spec, img) if "sam_onnx" in models else []
    return ImagePrompts(full, split, sam)


def _package_outputs(package_dir: Path, kind: str, num_threads: int, models: dict, images: list[ParityImage],
                     prompts: list[ImagePrompts]) -> list[dict]:
    """The package's outputs per photo: embedding, every decoder variant on its prompts (fed the package's own
    embedding; full variants, then the split decoder's), the SAM-signature decoder's masks (ONNX), and seconds per
    variant. Each model is opened once, run on every photo and closed before the next one opens: a runtime keeps the
    memory its largest run needed while it is open (ONNX Runtime's arena: 2.2 GB for the split decoder at K=64, 1024 px)."""
    from mobile_runtime.backends import open_model

    def load(entry: dict):  # noqa: ANN202
        return open_model(package_dir / entry["file"], kind, num_threads, signature=entry.get("signature"))

    def timed(o: dict, key: str, model, entry: dict, feeds: dict) -> None:  # noqa: ANN001
        t0 = time.perf_counter()
        o["variants"].append(run_entry(model, entry, feeds))
        o["seconds"][key] = time.perf_counter() - t0

    outs = [{"variants": [], "seconds": {}, "prompts": p.count, "sam": None} for p in prompts]
    encoder = load(models["encoder"])
    for img, o in zip(images, outs):
        emb = run_entry(encoder, models["encoder"], {"image": img.x.numpy()})["image_embeddings"]
        o["embedding"] = emb.astype(np.float32)
    del encoder
    dec = models["decoder"]
    for i, entry in enumerate(dec["variants"].values()):
        model = load(entry)
        for p, o in zip(prompts, outs):
            k, feeds = p.full[i]
            timed(o, f"full_k{k}", model, dec, {"image_embeddings": o["embedding"], **feeds})
        del model
    if "decoder_prep" in models:
        prep = load(models["decoder_prep"])
        prepped = [run_entry(prep, models["decoder_prep"], {"image_embeddings": o["embedding"]}) for o in outs]
        del prep
        fast = models["decoder_fast"]
        slots = fast.get("slots", N_SLOTS)
        for i, entry in enumerate(fast["variants"].values()):
            model = load(entry)
            for p, o, pre in zip(prompts, outs, prepped):
                k, feeds = p.split[i]
                timed(o, f"split_k{k}", model, fast, {**pre, **{n: feeds[n][:, :slots] for n in ("point_coords", "point_labels")}})
            del model
    if "sam_onnx" in models:
        sam = open_model(package_dir / models["sam_onnx"]["file"], "onnx")
        for p, o in zip(prompts, outs):
            o["sam"] = [np.array(sam.run({**f, "image_embeddings": o["embedding"]})["masks"], copy=True) for f in p.sam]
    return outs


def _reference_outputs(reference: torch.nn.Module, spec: ExportSpec, images: list[ParityImage],
                       prompts: list[ImagePrompts]) -> list[dict]:
    """The reference's outputs on the same photos and prompts, in the order `_package_outputs` gives the package's:
    run before any package model is opened, so that the runtimes' memory and the reference's never add up."""
    names = [t.name for t in spec.decoder_inputs(1)[1:]]
    sam_names = [t.name for t in spec.sam_onnx_inputs()][1:]
    ref_dec = sam_onnx_module(reference) if any(p.sam for p in prompts) else None
    out = []
    for img, p in zip(images, prompts):
        with torch.no_grad():
            emb = reference.encode_image(img.x)
            variants = []
            for name, feeds in p.named():
                lo, iou = reference.decode_prompts(emb, *(torch.from_numpy(feeds[n]) if n in feeds else None for n in names))
                variants.append((name, lo.numpy(), iou.numpy()))
            sam = [ref_dec(emb, *(torch.from_numpy(f[n]) for n in sam_names))[0].numpy() for f in p.sam]
        out.append({"embedding": emb.numpy(), "variants": variants, "sam": sam})
    return out


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


def _compare(refs: list[dict], images: list[ParityImage], outs: list[dict]) -> dict:
    """Parity metrics of the package outputs `outs` against the reference's `refs` (`_reference_outputs`)."""
    emb_errs, ious, lr_err, iou_err, sam_ious, nonfinite, split_ious = [], [], 0.0, 0.0, [], [], []
    for img, ref, out in zip(images, refs, outs):
        emb = ref["embedding"]
        emb_errs.append(worst(0.0, np.linalg.norm(out["embedding"] - emb) / max(np.linalg.norm(emb), 1e-12)))
        nonfinite += [f"{who} embedding of {img.name}" for who, v in (("package", out["embedding"]), ("reference", emb))
                      if not np.isfinite(v).all()]
        for (name, lo, iou), got in zip(ref["variants"], out["variants"]):
            ious.append(mask_ious(got["low_res_masks"], lo).ravel())
            if name.startswith("split"):
                split_ious.append(ious[-1])
            lr_err = worst(lr_err, np.abs(got["low_res_masks"] - lo).max())
            iou_err = worst(iou_err, np.abs(got["iou_predictions"] - iou).max())
            nonfinite += [f"{who} {name} decoder outputs on {img.name}" for who, v in
                          (("package", got["low_res_masks"]), ("reference", lo),
                           ("package", got["iou_predictions"]), ("reference", iou)) if not np.isfinite(v).all()]
        if out["sam"] is not None:
            sam_ious.append(np.concatenate([mask_ious(m, r).ravel() for m, r in zip(out["sam"], ref["sam"])]))
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
    spec = ExportSpec(model.config, manifest["target"], manifest["precision"])
    kind, models = spec.target, manifest["models"]
    images = [prepare_image(model, name, arr) for name, arr in load_parity_images(calibration)]
    prompts = [image_prompts(model, spec, models, img) for img in images]
    refs = _reference_outputs(model, spec, images, prompts)  # before the package's models open (memory)
    fq_refs = _reference_outputs(fake_quant, spec, images, prompts) if fake_quant is not None else None
    outs = _package_outputs(package_dir, kind, num_threads, models, images, prompts)
    metrics = _compare(refs, images, outs)
    thresholds = spec.thresholds
    failures = evaluate(thresholds, metrics)
    report: dict = {"metrics": metrics, "thresholds": thresholds, "reference": "float PyTorch model",
                    "decoder_timing": decoder_timing(outs)}
    if fake_quant is not None:
        fq_metrics = _compare(fq_refs, images, outs)
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


def _sam_onnx_feeds(model, spec: ExportSpec, img: ParityImage) -> list[dict[str, np.ndarray]]:  # noqa: ANN001
    """Feeds of the SAM-signature decoder for one photo, the embedding left out: point, pos+neg, box, point+box."""
    names = [t.name for t in spec.sam_onnx_inputs()][1:]
    out = []
    for index in range(4):
        f = parity_prompts(model, spec, 1, img.original_size, offset=index)
        used = f["point_labels"][0] != LABEL.EMPTY_SLOT
        feeds = {"point_coords": f["point_coords"][:, used], "point_labels": f["point_labels"][:, used],
                 "mask_input": np.zeros((1, 1, spec.low_res_size, spec.low_res_size), np.float32),
                 "has_mask_input": np.zeros(1, np.float32),
                 "orig_im_size": np.array(img.original_size, np.float32)}
        out.append({n: feeds[n] for n in names})
    return out
