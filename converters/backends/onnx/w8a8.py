"""ONNX W8A8: the BN-folded float graphs of the recipe's model with QuantizeLinear/DequantizeLinear
carrying the recipe's scales (`tinysam.quant.onnx_qdq`), encoder and every decoder graph."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from converters.backends.onnx.export import export_onnx
from converters.precision import PrecisionPlan
from converters.spec import ExportSpec
from converters.w8a8 import INT8_CATEGORIES, MATMUL_B, W8_AFLOAT, layer_split, package_reference


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


def export_w8a8(q: torch.nn.Module, spec: ExportSpec, out_dir: Path, plan: PrecisionPlan, work: Path,
                progress: Callable[[str], None] | None = None, calibration=None) -> tuple[dict, dict]:  # noqa: ARG001
    """Write the W8A8 ONNX files; returns (manifest `models` section, layer split)."""
    from tinysam.quant.export_format import describe
    from tinysam.quant.onnx_qdq import apply_quant_scales_onnx

    say = progress or (lambda msg: None)
    layers = layer_split(q, spec.target)
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
