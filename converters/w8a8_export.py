"""W8A8 exporters: the recipe's fake-quant model -> a package's model files, per target.

Each takes the calibrated fake-quant model `q` (`converters.w8a8.recipe_qmodel`) and writes the same
files, signatures and manifest `models` section as the float exporters, and returns the layer split
(`converters.w8a8.layer_split` form) its files actually hold:
- ONNX: the BN-folded float graphs of `q` with QuantizeLinear/DequantizeLinear carrying the recipe's
  scales (`tinysam.quant.onnx_qdq`), encoder and every decoder graph.
- LiteRT: a static int8 encoder with the recipe's activation scales and snapped weights (dynamic-range
  int8 FCs where the input is twin-uniform; `converters.tflite_w8a8`), and the decoder with the
  recipe's int8 weights and float activations.
- CoreML: `q` traced with torch's quantize/dequantize ops in place of its fake quantization;
  coremltools 9.0 turns them into `quantize`/`dequantize` ops (activations) and
  `constexpr_affine_dequantize` (weights) with exactly these scales.
"""

from __future__ import annotations

import contextlib
import copy
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from converters.spec import ExportSpec
from converters.w8a8 import (
    FLOAT,
    INT8_CATEGORIES,
    MATMUL_B,
    REASONS,
    W8_ADYNAMIC,
    W8_AFLOAT,
    W8A8,
    layer_split,
    package_reference,
)


@contextlib.contextmanager
def _quant_off(q: torch.nn.Module) -> Iterator[None]:
    """Fake quantization off inside the block (the float, BN-folded graph), back as it was after."""
    from tinysam.quant.qmodel import quant_layers

    before = {n: m.quant_enabled for n, m in quant_layers(q).items()}
    for m in quant_layers(q).values():
        m.quant_enabled = False
    try:
        yield
    finally:
        for n, m in quant_layers(q).items():
            m.quant_enabled = before[n]


def _onnx(q: torch.nn.Module, spec: ExportSpec, out_dir: Path, plan: dict, work: Path, say) -> tuple[dict, dict]:
    from converters.onnx_export import export_onnx
    from tinysam.quant.export_format import describe
    from tinysam.quant.onnx_qdq import apply_quant_scales_onnx

    layers = layer_split(q, "onnx")
    desc = describe(package_reference(q, layers))
    for name in layers[W8_AFLOAT] + layers[MATMUL_B]:
        desc["layers"][name]["a_kind"] = "float"  # no QDQ on the first input
    done: set[str] = set()
    skipped: list[dict] = []

    def qdq(src: Path, dst: Path) -> None:
        res = apply_quant_scales_onnx(src, desc, dst)
        done.update(res["quantized"])
        skipped.extend(dict(r, file=dst.name) for r in res["skipped"])

    with _quant_off(q):
        models = export_onnx(q, spec, out_dir, plan, work, say, convert=qdq)
    if skipped:
        first = skipped[0]
        raise RuntimeError(f"w8a8: {len(skipped)} recipe layers found no place for their QDQ nodes, e.g. "
                           f"{first['layer']} in {first['file']}: {first['reason']}")
    missing = [n for cat in INT8_CATEGORIES for n in layers[cat] if n not in done]
    if missing:
        raise RuntimeError(f"w8a8: {len(missing)} recipe layers have no node in the ONNX graphs, e.g. {missing[0]}")
    return models, layers


def _tflite(q: torch.nn.Module, spec: ExportSpec, out_dir: Path, work: Path, calibration, say) -> tuple[dict, dict]:
    from converters.tflite_compact import compact_tflite_biases
    from converters.tflite_export import float_decoder, float_encoder, tflite_models
    from converters.tflite_int8_moves import move_int8_data
    from converters.tflite_w8a8 import quantize_tflite_w8a8, snapped_copy, weight_only_int8
    from converters.w8a8 import CALIBRATION_IMAGES
    from tinysam.quant.calibrate import load_calibration_images, make_samples

    layers = layer_split(q, "tflite")
    say("tflite: converting the encoder with weights on the recipe's grid")
    snapped = snapped_copy(q, layers[W8A8] + layers[W8_ADYNAMIC] + layers[W8_AFLOAT])
    enc_float = work / "encoder_snapped_fp32.tflite"
    float_encoder(snapped, spec, enc_float)
    say("tflite: encoder -> static int8 with the recipe's activation scales")
    n = getattr(q, "recipe_calibration", {}).get("images", CALIBRATION_IMAGES)  # the search's own images
    cal = make_samples(q, load_calibration_images(calibration, n))
    info = quantize_tflite_w8a8(enc_float, out_dir / spec.encoder_file, q, [{"args_0": s.image.numpy()} for s in cal])
    move_int8_data(out_dir / spec.encoder_file)
    compact_tflite_biases(out_dir / spec.encoder_file, q)
    say("tflite: decoder -> int8 weights on the recipe's grid, float activations")
    dec_float = work / "decoder_snapped_fp32.tflite"
    float_decoder(snapped, spec, dec_float)
    # on LiteRT the layers with float activations are the decoder's (`layer_split`)
    dec_matched = weight_only_int8(dec_float, out_dir / "decoder.tflite", q, layers[W8_AFLOAT])
    done = set(info["int8_layers"] + info["dynamic_layers"] + dec_matched)
    unmatched = [n for n in layers[W8A8] + layers[W8_ADYNAMIC] + layers[W8_AFLOAT] if n not in done]
    for cat in (W8A8, W8_ADYNAMIC, W8_AFLOAT):
        layers[cat] = [n for n in layers[cat] if n in done]
    if unmatched:
        layers[FLOAT][REASONS["litert_unmatched"]] = unmatched
    return tflite_models(spec), layers


def _fq_act(layer, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:  # noqa: ANN001
    if not layer.act_quant:
        return x
    s = float(layer.a_scale if scale is None else scale)
    return torch.quantize_per_tensor(x, s, 0, torch.qint8).dequantize()


def _fq_b(layer, b: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:  # noqa: ANN001
    s = float(layer.b_scale if scale is None else scale)
    return torch.quantize_per_tensor(b, s, 0, torch.qint8).dequantize()


def _fq_weight(layer, scale: torch.Tensor | None = None) -> torch.Tensor:  # noqa: ANN001
    s = (layer.w_scale if scale is None else scale).double().clamp_min(1e-12)
    zeros = torch.zeros(s.numel(), dtype=torch.int64)
    return torch.quantize_per_channel(layer.weight, s, zeros, layer.weight_axis, torch.qint8).dequantize()


def torch_quant_ops(ref: torch.nn.Module) -> torch.nn.Module:
    """Copy of the fake-quant model `ref` whose enabled quantize steps are torch's quantize/dequantize ops.

    Same values as the fake quantization (symmetric int8, zero point 0); traced, coremltools converts
    them with the given scales.
    """
    from tinysam.quant.qmodel import quant_layers

    view = copy.deepcopy(ref).eval()
    for layer in quant_layers(view).values():
        if not layer.quant_enabled:
            continue
        layer.quant_act = types.MethodType(_fq_act, layer)
        if layer.kind == "matmul":
            layer.quant_b = types.MethodType(_fq_b, layer)
        else:
            layer.quant_weight = types.MethodType(_fq_weight, layer)
    return view


def _coreml(q: torch.nn.Module, spec: ExportSpec, out_dir: Path, plan: dict, work: Path, say) -> tuple[dict, dict]:
    from converters.coreml_export import export_coreml

    layers = layer_split(q, "coreml")
    view = torch_quant_ops(package_reference(q, layers))
    return export_coreml(view, spec, out_dir, plan, work, say), layers


def export_w8a8(q: torch.nn.Module, spec: ExportSpec, out_dir: Path, plan: dict, work: Path,
                progress: Callable[[str], None] | None = None,
                calibration: str | Path | None = None) -> tuple[dict, dict]:
    """Write the W8A8 model files of `spec.target` into `out_dir`: (manifest `models` section, layer split).

    `calibration` (LiteRT only) gives the images whose ranges LiteRT calibrates for its int8 outputs:
    the same images the recipe's scales were searched on.
    """
    say = progress or (lambda msg: None)
    work.mkdir(parents=True, exist_ok=True)
    if spec.target == "onnx":
        return _onnx(q, spec, out_dir, plan, work, say)
    if spec.target == "tflite":
        return _tflite(q, spec, out_dir, work, calibration, say)
    return _coreml(q, spec, out_dir, plan, work, say)
