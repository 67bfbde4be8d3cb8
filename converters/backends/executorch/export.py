"""ExecuTorch (.pte) export: torch.export, optional PT2E int8, lowering with the XNNPACK partitioner.

`encoder.pte` holds one method (`forward`); `decoder.pte` holds one method per variant K
(`decoder_k1`, `decoder_k16`), which share one copy of the weights (see `capabilities`).
ExecuTorch tensors have no names: the manifest names inputs and outputs `input_<i>` / `output_<i>`
in call order, each with its `logical_name`.

Precisions: fp32, int8 and mixed (`converters.backends.executorch.quantize`); fp16 and w8a8 are refused
(`capabilities.REFUSED` says why).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from converters.backends.executorch import capabilities as caps
from converters.backends.executorch.quantize import QuantScope, quantized_program
from converters.examples import decoder_sample
from converters.spec import ExportSpec
from converters.wrappers import EncoderWrapper, decoder_module

CALIBRATION_IMAGES = 4  # the images the static int8 ranges are calibrated on (as the w8a8 scale search)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the exporter's warnings and chatter (errors still raise)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        level = logging.root.level
        logging.root.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logging.root.setLevel(level)


def lower(programs: dict[str, torch.export.ExportedProgram], quantized: bool = False) -> bytes:
    """Exported programs (method name -> program) -> the bytes of one .pte, lowered to XNNPACK.

    Quantized programs take the dynamically quantized layers first, then everything else: with the one
    default partitioner the int8 decoder failed to lower ("Invalid partition, found dependency cycles").
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
        XnnpackDynamicallyQuantizedPartitioner,
        XnnpackPartitioner,
    )
    from executorch.exir import to_edge_transform_and_lower

    parts = [XnnpackDynamicallyQuantizedPartitioner(), XnnpackPartitioner()] if quantized else [XnnpackPartitioner()]
    with quiet():
        edge = to_edge_transform_and_lower(programs, partitioner=parts)
        return edge.to_executorch().buffer


def _calibration_images(model: nn.Module, calibration) -> list[tuple[torch.Tensor]]:
    from tinysam.quant.calibrate import load_calibration_images, make_samples

    return [(s.image,) for s in make_samples(model, load_calibration_images(calibration, CALIBRATION_IMAGES))]


def _program(module: nn.Module, args: tuple, precision: str, part: str, plan: dict,
             calibration: list[tuple]) -> tuple[torch.export.ExportedProgram, QuantScope | None]:
    if precision in ("int8", "mixed"):
        return quantized_program(module, args, part, plan, calibration)
    with torch.no_grad():
        return torch.export.export(module.eval(), args), None


def _io(tensors: list, prefix: str) -> list[dict]:
    return [dict(t.to_dict(), name=f"{prefix}_{i}", logical_name=t.name) for i, t in enumerate(tensors)]


def executorch_models(spec: ExportSpec, scopes: dict[str, QuantScope]) -> dict:
    """The manifest's `models` section of an ExecuTorch package."""
    variants = {str(k): dict(v) for k, v in spec.decoder_variants().items()}
    models = {
        "encoder": {"file": spec.encoder_file, "signature": caps.ENCODER_METHOD,
                    "inputs": _io(spec.encoder_inputs(), "input"), "outputs": _io(spec.encoder_outputs(), "output")},
        "decoder": {"file": "decoder.pte", "variants": variants, "packaging": "methods of one program",
                    "inputs": _io(spec.decoder_inputs("K"), "input"), "outputs": _io(spec.decoder_outputs("K"), "output")},
    }
    for part, s in scopes.items():
        models[part]["int8_layers"] = {"int8": len(s.int8), "kept_float": s.float}
    return models


def export_executorch(model: nn.Module, spec: ExportSpec, out_dir: Path, plan: dict, work: Path,
                      progress: Callable[[str], None] | None = None, calibration=None) -> dict:
    """Write encoder.pte and decoder.pte (methods decoder_k1, decoder_k16) into `out_dir`; returns `models`."""
    say = progress or (lambda msg: None)
    if spec.precision not in caps.CAPABILITIES.precisions:
        raise ValueError(f"executorch packages support precisions {', '.join(caps.CAPABILITIES.precisions)}, "
                         f"not {spec.precision!r}")
    work.mkdir(parents=True, exist_ok=True)
    s = spec.image_size
    quantized = spec.precision in ("int8", "mixed")
    scopes: dict[str, QuantScope] = {}
    cal = _calibration_images(model, calibration) if quantized else []
    say(f"executorch: exporting encoder ({spec.precision})" + (f", calibrated on {len(cal)} images" if cal else ""))
    ep, enc_scope = _program(EncoderWrapper(model), (torch.randn(1, 3, s, s),), spec.precision, "encoder", plan, cal)
    say("executorch: lowering encoder to XNNPACK")
    (out_dir / spec.encoder_file).write_bytes(lower({caps.ENCODER_METHOD: ep}, quantized))
    if enc_scope is not None:
        scopes["encoder"] = enc_scope
    dec = decoder_module(model)
    programs = {}
    for k, v in spec.decoder_variants().items():
        say(f"executorch: exporting decoder K={k}")
        programs[str(v["signature"])], dec_scope = _program(dec, decoder_sample(spec, k), spec.precision, "decoder",
                                                            plan, [])
        if dec_scope is not None:
            scopes["decoder"] = dec_scope
    say("executorch: lowering the decoder methods " + ", ".join(programs) + " into one program")
    (out_dir / "decoder.pte").write_bytes(lower(programs, quantized))
    return executorch_models(spec, scopes)
