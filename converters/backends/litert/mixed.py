"""LiteRT mixed packages from a measured plan: per encoder layer float, int8 weights (weight-only),
dynamic int8 inputs (dynamic-range FULLY_CONNECTED) or static int8 inputs with the recipe's scales;
the decoder with int8 weights where the plan says so, float elsewhere.

The weights of every int8 layer are first snapped to the plan's grid (`converters.w8a8.snapped_copy` with
the scales `converters.mixed_modes.set_weight_scales` set: the recipe's for static/dynamic layers,
max-based for int8-weight layers), so the package computes what the plan was measured on, apart from
the output requantization of LiteRT's static int8 ops (ranges calibrated on the calibration images).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from converters.backends.litert.compact import compact_tflite_biases
from converters.backends.litert.export import (
    float_decoder,
    float_encoder,
    tflite_models,
)
from converters.backends.litert.int8_moves import move_int8_data
from converters.backends.litert.recipes import WEIGHT_OPS
from converters.backends.litert.w8a8_quantize import (
    QUANT_OPS,
    add_fp16_weights,
    layer_ops,
    output_ranges,
    weight_only_config,
    weight_only_int8,
)
from converters.logs import quiet
from converters.mixed_modes import FLOAT_REASON, split_from_modes
from converters.precision import PrecisionPlan
from converters.spec import ExportSpec
from converters.w8a8 import (
    CALIBRATION_IMAGES,
    FLOAT,
    INT8_CATEGORIES,
    W8_ADYNAMIC,
    W8_AFLOAT,
    W8A8,
    snapped_copy,
)

ENCODER = "image_encoder."
UNMATCHED_REASON = "no LiteRT FULLY_CONNECTED/CONV_2D op matched this layer"


def quantize_encoder(float_path: Path, out_path: Path, qmodel: torch.nn.Module, samples: list[dict[str, np.ndarray]],
                     static: list[str], dynamic: list[str], weights_only: list[str], fp16: list[str] = ()) -> set[str]:
    """Write `out_path`: the float encoder with each named layer's op quantized as its list says (`fp16`:
    float16 weights, float compute); the static layers take the recipe's input scales. `qmodel` holds the
    weights converted into `float_path` (`snapped_copy`). Returns the int8 layer names whose op was found."""
    from litert_quantizer import qtyping, quantizer, recipe_manager
    from litert_quantizer.algorithm_manager import AlgorithmName

    from tinysam.quant.qmodel import quant_layers

    layers = quant_layers(qmodel)
    matched = layer_ops(float_path, qmodel, ENCODER.rstrip("."))
    rx = {n: io[2] for n, io in matched.items()}
    op = qtyping.TFLOperationName
    rm = recipe_manager.RecipeManager()
    add_fp16_weights(rm, rx, [n for n in fp16 if n in matched])
    for n in weights_only:
        if n in matched:
            for name in WEIGHT_OPS:
                rm.add_quantization_config(rx[n], op(name), weight_only_config(), AlgorithmName.MIN_MAX_UNIFORM_QUANT)
    for n in dynamic:
        if n in matched:
            rm.add_dynamic_config(rx[n], op.FULLY_CONNECTED, 8)
    for n in static:
        if n in matched:
            for name in QUANT_OPS:
                rm.add_static_config(rx[n], op(name), 8, 8)
    inputs = {n: matched[n][0] for n in static if n in matched}
    with quiet():
        q = quantizer.Quantizer(str(float_path))
        q.load_quantization_recipe(rm.get_quantization_recipe())
        if inputs:
            stats = output_ranges(float_path, sorted({matched[n][1] for n in inputs}), samples)
            for n, tensor in inputs.items():
                s = float(layers[n].a_scale)
                stats[tensor] = {"min": np.array(-128.0 * s, np.float32), "max": np.array(127.0 * s, np.float32)}
            result = q.quantize(stats, enable_progress_report=False)
        else:
            result = q.quantize(enable_progress_report=False)
        result.export_model(str(out_path), overwrite=True)
    return set(matched) & set(static + dynamic + weights_only)


def export_mixed(q: torch.nn.Module, spec: ExportSpec, out_dir: Path, plan: PrecisionPlan, work: Path,
                 progress: Callable[[str], None] | None = None, calibration=None) -> tuple[dict, dict]:
    """Write the mixed LiteRT files of `plan` (its `layer_modes`); returns (manifest `models`, layer split).
    The plan's float layers keep float compute with float16 weights (`MIXED.float_weight_bytes`)."""
    from tinysam.quant.calibrate import load_calibration_images, make_samples
    from tinysam.quant.qmodel import quant_layers

    say = progress or (lambda msg: None)
    work.mkdir(parents=True, exist_ok=True)
    layers = split_from_modes(q, plan.layer_modes)
    enc = {c: [n for n in layers[c] if n.startswith(ENCODER)] for c in INT8_CATEGORIES}
    dec = [n for n in layers[W8_AFLOAT] if not n.startswith(ENCODER)]
    bad = [n for c in INT8_CATEGORIES if c not in (W8A8, W8_ADYNAMIC, W8_AFLOAT) for n in layers[c]]
    bad += [n for n in layers[W8A8] + layers[W8_ADYNAMIC] if not n.startswith(ENCODER)]
    if bad:
        raise ValueError(f"LiteRT mixed packages cannot run {bad[0]} as the plan says (see its MixedSupport)")
    int8 = [n for c in (W8A8, W8_ADYNAMIC, W8_AFLOAT) for n in layers[c]]
    weighted = {n for n, m in quant_layers(q).items() if hasattr(m, "weight")}
    half = [n for n in layers[FLOAT].get(FLOAT_REASON, []) if n in weighted]  # float groups: float16 weights
    say(f"tflite: encoder with {len(enc[W8A8])} static int8, {len(enc[W8_ADYNAMIC])} dynamic int8, "
        f"{len(enc[W8_AFLOAT])} int8-weight layers (weights on the plan's int8 grid)")
    snapped = snapped_copy(q, int8)
    enc_float = work / "encoder_snapped_fp32.tflite"
    float_encoder(snapped, spec, enc_float)
    n = getattr(q, "recipe_calibration", {}).get("images", CALIBRATION_IMAGES)
    cal = make_samples(q, load_calibration_images(calibration, n)) if enc[W8A8] else []
    done = quantize_encoder(enc_float, out_dir / spec.encoder_file, snapped, [{"args_0": s.image.numpy()} for s in cal],
                            enc[W8A8], enc[W8_ADYNAMIC], enc[W8_AFLOAT], [n for n in half if n.startswith(ENCODER)])
    move_int8_data(out_dir / spec.encoder_file)
    compact_tflite_biases(out_dir / spec.encoder_file, q)
    dec_half = [n for n in half if not n.startswith(ENCODER)]
    say(f"tflite: decoder with {len(dec)} int8-weight and {len(dec_half)} float16-weight layers")
    dec_float = work / "decoder_snapped_fp32.tflite"
    float_decoder(snapped, spec, dec_float)
    if dec or dec_half:
        done |= set(weight_only_int8(dec_float, out_dir / "decoder.tflite", snapped, dec, dec_half))
    else:
        (out_dir / "decoder.tflite").write_bytes(dec_float.read_bytes())
    unmatched = [n for n in int8 if n not in done]
    for c in (W8A8, W8_ADYNAMIC, W8_AFLOAT):
        layers[c] = [n for n in layers[c] if n in done]
    if unmatched:
        layers[FLOAT][UNMATCHED_REASON] = unmatched
    return tflite_models(spec), layers
