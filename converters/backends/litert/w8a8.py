"""LiteRT W8A8: a static int8 encoder with the recipe's activation scales and snapped weights
(dynamic-range int8 FCs where the input is twin-uniform; `w8a8_quantize`), and the decoder with the
recipe's int8 weights and float activations, except the Linears LiteRT folds a LayerNorm into
(`op_match.folded_layers`), whose weights are float16."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from converters.backends.litert.compact import compact_tflite_biases
from converters.backends.litert.export import float_decoder, float_encoder, tflite_models
from converters.backends.litert.int8_moves import move_int8_data
from converters.backends.litert.op_match import folded_layers
from converters.backends.litert.w8a8_quantize import quantize_tflite_w8a8, weight_only_int8
from converters.precision import PrecisionPlan
from converters.spec import ExportSpec
from converters.w8a8 import CALIBRATION_IMAGES, FLOAT, W8_ADYNAMIC, W8_AFLOAT, W8A8, layer_split, snapped_copy

UNMATCHED_REASON = "no LiteRT FULLY_CONNECTED/CONV_2D op matched this layer"
FOLDED_REASON = ("LiteRT folds the LayerNorm before it into this weight, so its int8 grid could not be the "
                 "recipe's: float16 weights (bench/w8a8_errors.py: 1-click agreement 0.967 with LiteRT's own "
                 "int8 of the folded weights, 0.980 with them float16, as the recipe's fake-quant model)")


def export_w8a8(q: torch.nn.Module, spec: ExportSpec, out_dir: Path, plan: PrecisionPlan, work: Path,  # noqa: ARG001
                progress: Callable[[str], None] | None = None, calibration=None) -> tuple[dict, dict]:
    """Write the W8A8 LiteRT files; returns (manifest `models` section, layer split).

    `calibration` gives the images whose ranges LiteRT calibrates for its int8 outputs: the same
    images the recipe's scales were searched on.
    """
    from tinysam.quant.calibrate import load_calibration_images, make_samples

    say = progress or (lambda msg: None)
    layers = layer_split(q, spec.target)
    say("tflite: converting the encoder with weights on the recipe's grid")
    snapped = snapped_copy(q, layers[W8A8] + layers[W8_ADYNAMIC] + layers[W8_AFLOAT])
    enc_float = work / "encoder_snapped_fp32.tflite"
    float_encoder(snapped, spec, enc_float)
    say("tflite: encoder -> static int8 with the recipe's activation scales")
    n = getattr(q, "recipe_calibration", {}).get("images", CALIBRATION_IMAGES)  # the search's own images
    cal = make_samples(q, load_calibration_images(calibration, n))
    enc_w8 = [n for n in layers[W8_AFLOAT] if n.startswith("image_encoder")]  # `FLOAT_ACTIVATION_LAYERS`
    info = quantize_tflite_w8a8(enc_float, out_dir / spec.encoder_file, snapped, [{"args_0": s.image.numpy()} for s in cal],
                                weight_only=enc_w8)
    move_int8_data(out_dir / spec.encoder_file)
    compact_tflite_biases(out_dir / spec.encoder_file, q)
    say("tflite: decoder -> int8 weights on the recipe's grid, float activations")
    dec_float = work / "decoder_snapped_fp32.tflite"
    float_decoder(snapped, spec, dec_float)
    dec_w8 = [n for n in layers[W8_AFLOAT] if n not in enc_w8]  # the decoder's (`layer_split`)
    folded = folded_layers(dec_float, snapped, dec_w8)
    dec_matched = weight_only_int8(dec_float, out_dir / "decoder.tflite", snapped,
                                   [n for n in dec_w8 if n not in folded], folded)
    done = set(info["int8_layers"] + info["dynamic_layers"] + info["weight_only_layers"] + dec_matched)
    if folded:
        layers[FLOAT][FOLDED_REASON] = folded
    unmatched = [n for n in layers[W8A8] + layers[W8_ADYNAMIC] + layers[W8_AFLOAT] if n not in done and n not in folded]
    for cat in (W8A8, W8_ADYNAMIC, W8_AFLOAT):
        layers[cat] = [n for n in layers[cat] if n in done]
    if unmatched:
        layers[FLOAT][UNMATCHED_REASON] = unmatched
    return tflite_models(spec), layers
