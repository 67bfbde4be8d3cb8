"""W8A8 packages (`convert --precision w8a8`): the Q-TinySAM recipe and the model each package is checked against.

- `recipe_qmodel`: the recipe (Hessian-guided scale search, twin-uniform ranges) on calibration images.
- `scales_json` / `qmodel_from_scales`: the searched scales as a package file (`SCALES_FILE`), so
  `verify` rebuilds the same fake-quant model without searching again.
- `layer_split(q, target)`: which recipe layers a target's files hold in int8 (weights, activations,
  matmul operands) and which stay float, with the reason.
- `package_reference(q, layers)`: the fake-quant model of exactly that split, the parity reference.
- `w8a8_plan(...)`: the manifest's precision plan.
The per-target exporters live in `converters/backends/<target>/w8a8.py` (`converters.w8a8_export` picks one).
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SCALES_FILE = "w8a8_scales.json"
SCALES_FORMAT = "tinysam-w8a8-scales"
CALIBRATION_IMAGES = 4  # images of the scale search (as the measured mixed plan)
# Lowest activation-scale candidate, as a multiple of the calibration maximum: 1.0 never clips. The search's
# Fisher metric on 4 calibration images chose clipping ranges (0.7x max on the encoder's trunk convs) that
# cost 4-5% encoder relative error per layer on held-out images (bench/w8a8_errors.py).
ACT_LOW = 1.0
# Per-channel weight scales are max-based (candidates from W_LOW to W_HIGH x max|w| / 127): the search's
# weight clipping took the decoder's 1-click agreement (int8 weights, float inputs) from 0.980 to 0.948, and
# candidates above 1.0 (coarser, chosen by the same metric) to 0.964.
W_LOW = W_HIGH = 1.0


@dataclass(frozen=True)
class FloatRule:
    """Layers (a regex on the module path) that W8A8 packages keep partly or wholly float, and why."""

    pattern: str  # regex on the recipe's module path (`re.match`)
    reason: str


# Measured at the trained size on held-out mini-SA (bench/w8a8_errors.py, results in
# bench/results/w8a8_errors.json). The mixed plan may read this list as the layers whose int8 input costs most.
FLOAT_ACTIVATION_LAYERS = (
    FloatRule(
        r"image_encoder\.(patch_embed|layers\.\d+\.downsample|layers\.\d+\.blocks\.\d+\.local_conv|neck)\.",
        "encoder trunk: no residual path around it (patch embedding, downsampling, the window blocks' "
        "depthwise conv, the neck), so the rounding error of a static int8 input reaches the embedding whole; "
        "these 23 layers carry nearly all of the encoder's W8A8 error (bench/w8a8_errors.py)"),
    FloatRule(
        r"mask_decoder\.",
        "prompt decoder: static int8 inputs flip its masks (1-click agreement with the float model 0.87 with "
        "every input int8, 0.88 with only the image-to-token attention's, 0.97 with every other group's; "
        "0.98 with int8 weights and float inputs, as LiteRT's decoder always had; bench/w8a8_errors.py)"),
)


# Layers that stay float in every W8A8 package, weights included (measured as above, 16 held-out scenes,
# torch fake-quant of the recipe: 1-click agreement 0.980 with the decoder's int8 weights, 0.995 with only this
# group's float; the final token-to-image attention, the IoU head, the hypernetwork MLPs or the upscaling
# float instead: 0.970 to 0.980).
FLOAT_LAYERS = (
    FloatRule(
        r"mask_decoder\.transformer\.layers\.1\.cross_attn_image_to_token\.",
        "the last two-way layer's image-to-token attention: it rewrites the image embedding the masks are read "
        "from, and its int8 weights alone flip masks (1-click agreement with the float model 0.980 with every "
        "decoder weight int8, 0.995 with this group float; bench/w8a8_errors.py)"),
)


def _reason(rules: tuple[FloatRule, ...], name: str) -> str | None:
    return next((r.reason for r in rules if re.match(r.pattern, name)), None)


def float_layer_reason(name: str) -> str | None:
    """Why `name` stays float, weights included, in W8A8 packages (`FLOAT_LAYERS`), or None."""
    return _reason(FLOAT_LAYERS, name)


def float_activation_reason(name: str) -> str | None:
    """Why `name`'s input stays float in W8A8 packages (`FLOAT_ACTIVATION_LAYERS`), or None."""
    return _reason(FLOAT_ACTIVATION_LAYERS, name)


# Layer categories of the manifest (`precision_plan.layers`).
W8A8 = "int8_weights_int8_activations"
W8_AFLOAT = "int8_weights_float_activations"
W8_ADYNAMIC = "int8_weights_dynamic_int8_activations"
MATMUL_BOTH = "int8_matmul_both_operands"
MATMUL_B = "int8_matmul_second_operand"
FLOAT = "float"
INT8_CATEGORIES = (W8A8, W8_AFLOAT, W8_ADYNAMIC, MATMUL_BOTH, MATMUL_B)

REASONS = {
    "uncalibrated": "never ran on the calibration prompts (e.g. the mask-input convs: calibration uses no "
                    "mask prompts), so the recipe has no scales for it",
    "twin_act": "its input uses the recipe's twin-uniform quantizer (post-GELU / post-softmax: two ranges "
                "with different steps), which no int8 tensor (one scale) can hold",
}
# What a target cannot hold in int8, and how it computes twin-uniform inputs instead of in float, is its
# backend's `capabilities.w8a8` (`converters.backends.base.W8A8Support`).


def recipe_qmodel(model: torch.nn.Module, calibration: str | Path | None = None, images: int = CALIBRATION_IMAGES,
                  progress: Callable[[str], None] | None = None, cfg=None) -> torch.nn.Module:  # noqa: ANN001
    """The W8A8 fake-quant model with the recipe's searched scales (quantization on).

    Images come from `calibration` (a directory) or the bundled photos; each gets the recipe's fixed
    prompts (a 3x3 click grid and 4 boxes). How it was calibrated is kept in `q.recipe_calibration`
    (for the manifest). `model` is not modified. `cfg`: a `tinysam.quant.search.SearchConfig` instead of
    the recipe's (32 candidates, 1 round, activation and weight scales from `ACT_LOW` / `W_LOW` x their maximum up).
    """
    from converters.mixed_plan import SEARCH_CANDIDATES, SEARCH_ROUNDS
    from tinysam.quant.calibrate import load_calibration_images, make_samples
    from tinysam.quant.qmodel import quantize_model
    from tinysam.quant.search import SearchConfig, calibrate_model

    say = progress or (lambda msg: None)
    imgs = load_calibration_images(calibration, images)
    if not imgs:
        raise ValueError("w8a8 needs at least one calibration image")
    cal = make_samples(model, imgs)
    cfg = cfg or SearchConfig(n_candidates=SEARCH_CANDIDATES, rounds=SEARCH_ROUNDS, act_low=ACT_LOW, w_low=W_LOW,
                              w_high=W_HIGH)
    say(f"w8a8: Q-TinySAM scale search ({cfg.method}, {cfg.n_candidates} candidates) on {len(cal)} images")
    q = quantize_model(model, "w8a8")
    calibrate_model(q, cal, cfg, progress=False)
    q.recipe_calibration = {"source": "bundled" if calibration is None else "directory", "images": len(cal),
                            "prompts_per_image": int(cal[0].coords.shape[0]),
                            "search": {"method": cfg.method, "n_candidates": cfg.n_candidates,
                                       "rounds": cfg.rounds, "range": [cfg.low, cfg.high],
                                       "activation_range": [cfg.act_low_ratio, cfg.high],
                                       "weight_range": [cfg.w_low_ratio, cfg.w_high_ratio]}}
    return q


def _f32(values: torch.Tensor) -> list[float]:
    """float32 values as the shortest decimals that read back to the same float32."""
    return [float(str(v)) for v in np.asarray(values.detach().cpu(), np.float32).reshape(-1)]


def scales_json(q: torch.nn.Module, only: set[str] | None = None) -> bytes:
    """The scales of every calibrated layer of `q` (of those in `only`, when given) as JSON bytes (symmetric,
    zero point 0)."""
    from tinysam.quant.qmodel import quant_layers

    layers = {}
    for name, layer in quant_layers(q).items():
        if not layer.calibrated or (only is not None and name not in only):
            continue
        d: dict = {"a_kind": layer.a_kind, "a_scale": _f32(layer.a_scale)[0]}
        if hasattr(layer, "b_scale"):
            d["b_scale"] = _f32(layer.b_scale)[0]
        if hasattr(layer, "w_scale"):
            d["w_scale_f32le"] = base64.b64encode(np.asarray(layer.w_scale.detach().cpu(), "<f4").tobytes()).decode()
        layers[name] = d
    doc = {"format": SCALES_FORMAT, "version": 2, "bits": getattr(q, "quant_bits", "w8a8"),
           "meaning": "x = q * scale, zero point 0; w_scale per output channel (PyTorch weight layout, "
                      "BatchNorm folded into the conv before it), base64 of little-endian float32 "
                      "(version 1: a list of numbers); a_scale of twin-uniform kinds is their fine step",
           "layers": layers}
    return json.dumps(doc, separators=(",", ":")).encode()


def _weight_scales(d: dict, name: str) -> np.ndarray | None:
    """A layer's per-channel weight scales from a scales file entry (version 2 base64, version 1 list)."""
    if "w_scale_f32le" in d:
        try:
            raw = base64.b64decode(d["w_scale_f32le"], validate=True)
        except (ValueError, TypeError):
            raise ValueError(f"layer {name}: w_scale_f32le is not base64") from None
        if len(raw) % 4:
            raise ValueError(f"layer {name}: w_scale_f32le holds {len(raw)} bytes, not whole float32 values")
        w = np.frombuffer(raw, "<f4").astype(np.float32)
    elif "w_scale" in d:
        w = np.asarray(d["w_scale"], np.float32)
    else:
        return None
    if not (np.isfinite(w).all() and (w >= 0).all()):
        raise ValueError(f"layer {name}: weight scales must be finite and non-negative")
    return w


def qmodel_from_scales(model: torch.nn.Module, data: bytes | str) -> torch.nn.Module:
    """Rebuild the fake-quant model of `model` from `scales_json` output (quantization on)."""
    from tinysam.quant.qmodel import quant_layers, quantize_model, set_quant

    doc = json.loads(data)
    if doc.get("format") != SCALES_FORMAT:
        raise ValueError(f"not a {SCALES_FORMAT} file (format={doc.get('format')!r})")
    q = quantize_model(model, doc.get("bits", "w8a8"))
    layers = quant_layers(q)
    unknown = sorted(set(doc["layers"]) - set(layers))
    if unknown:
        raise ValueError(f"scales name layers the model does not have: {', '.join(unknown[:3])}")
    with torch.no_grad():
        for name, d in doc["layers"].items():
            layer = layers[name]
            layer.a_kind = d["a_kind"]
            layer.a_scale.fill_(d["a_scale"])
            if "b_scale" in d:
                layer.b_scale.fill_(d["b_scale"])
            w = _weight_scales(d, name)
            if w is not None:
                if w.size != layer.w_scale.numel():
                    raise ValueError(f"layer {name}: {w.size} weight scales for {layer.w_scale.numel()} channels")
                layer.w_scale.copy_(torch.from_numpy(w).reshape(layer.w_scale.shape))
    set_quant(q, True)
    return q


def layer_split(q: torch.nn.Module, target: str) -> dict:
    """Recipe layers by what `target`'s files hold: {category: [names]}, FLOAT as {reason: [names]}.

    What the target can hold is its backend's `capabilities.w8a8`: ONNX (QDQ) and CoreML
    (quantize/dequantize ops) hold every calibrated layer's int8 weights and every uniform activation;
    twin-uniform activations stay float. LiteRT's split is known only after its quantizer ran
    (`converters/backends/litert/w8a8.py`), so here it lists the candidates: W8A8 for the encoder's
    uniform inputs, W8 with dynamic int8 activations for the encoder's twin-uniform inputs, W8 with
    float activations for the decoder.
    """
    from converters.backends import get_backend
    from tinysam.quant.qmodel import quant_layers

    can = get_backend(target).capabilities.w8a8
    out: dict = {c: [] for c in INT8_CATEGORIES}
    out[FLOAT] = {}

    for name, layer in quant_layers(q).items():
        uniform = layer.a_kind == "uniform"
        if not layer.calibrated:
            out[FLOAT].setdefault(REASONS["uncalibrated"], []).append(name)
        elif float_layer_reason(name) is not None:
            out[FLOAT].setdefault(float_layer_reason(name), []).append(name)  # `FLOAT_LAYERS`
        elif layer.kind == "matmul" and not can.int8_matmul:
            out[FLOAT].setdefault(can.matmul_float_reason, []).append(name)
        elif layer.kind == "matmul" and float_activation_reason(name) is not None:
            out[FLOAT].setdefault(float_activation_reason(name), []).append(name)  # `FLOAT_ACTIVATION_LAYERS`
        elif layer.kind == "matmul":
            out[MATMUL_BOTH if uniform else MATMUL_B].append(name)
        elif not any(name.startswith(p) for p in can.static_activation_prefixes):
            out[W8_AFLOAT].append(name)  # int8 weights only (`can.weights_only_reason`)
        elif float_activation_reason(name) is not None:
            out[W8_AFLOAT].append(name)  # int8 weights, float input (`FLOAT_ACTIVATION_LAYERS`)
        elif not uniform and can.twin_uniform == "dynamic_int8":  # twin-uniform inputs: post-GELU fc2, a Linear
            out[W8_ADYNAMIC].append(name)
        else:
            out[W8A8 if uniform else W8_AFLOAT].append(name)
    return out


def snapped_copy(qmodel: torch.nn.Module, names: list[str]) -> torch.nn.Module:
    """Copy of `qmodel` (quantization off) whose layers `names` hold weights on the recipe's int8 grid.

    For exporters that take no given weight scales but use max|w| / 127 per channel (litert-quantizer,
    the XNNPACK quantizer's observers): on snapped weights (codes clipped to +-127) that max is 127 x the
    recipe's scale wherever the searched scale clips the channel, so the exporter's scale and codes are
    the recipe's; where the searched scale exceeds the max-based one, its step is finer and its codes
    reproduce the recipe's values within half a step.
    """
    from tinysam.quant.qmodel import quant_layers, set_quant
    from tinysam.quant.quantizer import channel_view

    out = copy.deepcopy(qmodel).eval()
    set_quant(out, False)
    layers = quant_layers(out)
    for n in names:
        layer = layers[n]
        scale = channel_view(layer.w_scale.clamp_min(1e-12), layer.weight.dim(), layer.weight_axis)
        layer.weight.copy_(torch.clamp(torch.round(layer.weight / scale), -127, 127) * scale)
    return out


def package_reference(q: torch.nn.Module, layers: dict) -> torch.nn.Module:
    """Copy of `q` fake-quantizing exactly what `layers` (a `layer_split`) says is int8; the rest float."""
    from tinysam.quant.qmodel import quant_layers

    ref = copy.deepcopy(q).eval()
    qls = quant_layers(ref)
    for layer in qls.values():
        layer.quant_enabled = False
    for cat in INT8_CATEGORIES:
        for name in layers.get(cat, []):
            if name not in qls or not qls[name].calibrated:
                raise ValueError(f"w8a8 layer {name!r} has no calibrated scales")
            qls[name].quant_enabled = True
            qls[name].act_quant = cat in (W8A8, MATMUL_BOTH, W8_ADYNAMIC)
            qls[name].act_dynamic = cat == W8_ADYNAMIC
    return ref


def w8a8_plan(q: torch.nn.Module, layers: dict, target: str) -> dict:
    """The manifest's precision plan of a W8A8 package (`applied` is added by `converters.precision`)."""
    from converters.backends import get_backend
    from converters.precision import precision_plan
    from tinysam.quant.qmodel import quant_layers

    can = get_backend(target).capabilities.w8a8
    plan = precision_plan("w8a8")
    kinds = {n: m.a_kind for n, m in quant_layers(q).items()}
    twin = [n for n in layers.get(W8_AFLOAT, []) if kinds.get(n) != "uniform"]
    chosen: dict[str, list[str]] = {}  # `FLOAT_ACTIVATION_LAYERS` by reason
    for n in layers.get(W8_AFLOAT, []):
        if kinds.get(n) == "uniform" and float_activation_reason(n):
            chosen.setdefault(float_activation_reason(n), []).append(n)
    picked = {n for names in chosen.values() for n in names}
    other = [n for n in layers.get(W8_AFLOAT, []) if kinds.get(n) == "uniform" and n not in picked]  # LiteRT's decoder
    counts = {c: len(layers.get(c, [])) for c in INT8_CATEGORIES}
    counts[FLOAT] = sum(len(v) for v in layers.get(FLOAT, {}).values())
    plan.update(
        recipe={"name": "Q-TinySAM PTQ (tinysam.quant)", "bits": getattr(q, "quant_bits", "w8a8"),
                "scales_file": SCALES_FILE,
                "calibration": getattr(q, "recipe_calibration", None)},  # None: scales given by the caller
        layer_counts=counts, layers=layers,
        keep_float=[{"layers": len(names), "scope": "activations", "operand": operand, "reason": reason}
                    for names, operand, reason in (
                        (twin, "input (post-GELU)", REASONS["twin_act"] + "; the weights are int8"),
                        *((names, "input", reason + "; the weights are int8") for reason, names in chosen.items()),
                        (layers.get(MATMUL_B, []), "A (post-softmax)", REASONS["twin_act"] + "; operand B is int8"),
                        (other, "input", can.weights_only_reason))
                    if names]
        + [{"layers": len(names), "reason": reason} for reason, names in layers.get(FLOAT, {}).items()]
        + [{"ops": "LayerNorm, softmax, GELU, residual and relative-position adds, the decoder's final "
                    "hypernetwork product", "reason": "float in the recipe itself (not quantized layers)"}],
        dynamic_activations=[{"layers": len(layers[W8_ADYNAMIC]), "operand": "input (post-GELU)",
                              "why": REASONS["twin_act"], "computed": can.dynamic_activation_note}] if layers.get(W8_ADYNAMIC) else [],
        parity_reference=("the recipe's fake-quant model restricted to the int8 layers listed here "
                          f"(converters.w8a8.package_reference) for {target}, and the float model"))
    return plan
