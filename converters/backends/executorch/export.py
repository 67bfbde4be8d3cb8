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
from converters.backends.executorch.passes import (
    QUANTIZED_EDGE_PASSES,
    gathered_attention_biases,
    layer_norms_by_linear,
    without_unused_buffers,
)
from converters.backends.executorch.quantize import LayerModes, QuantScope, fixed_modes, quantized_program
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

    One `XnnpackPartitioner` takes float, static and dynamic int8 ops together. (With the dynamically
    quantized layers taken first by their own partitioner, every dynamic Linear became its own delegate
    call: 221 calls in a mixed encoder instead of 3, 233 ms instead of 177 ms at 1024 px, same outputs.)
    Quantized programs take `passes.QUANTIZED_EDGE_PASSES` before partitioning; no program keeps buffers it
    does not read (`passes.without_unused_buffers`).
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    passes = list(QUANTIZED_EDGE_PASSES) if quantized else None
    with quiet():
        programs = {name: without_unused_buffers(ep) for name, ep in programs.items()}
        edge = to_edge_transform_and_lower(programs, transform_passes=passes, partitioner=[XnnpackPartitioner()])
        return edge.to_executorch().buffer


def calibration_images(model: nn.Module, calibration) -> list[tuple[torch.Tensor]]:  # noqa: ANN001
    """The encoder's calibration inputs (argument tuples): the first images of `calibration`, else the bundled photos."""
    from tinysam.quant.calibrate import load_calibration_images, make_samples

    return [(s.image,) for s in make_samples(model, load_calibration_images(calibration, CALIBRATION_IMAGES))]


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


# part ("encoder" / "decoder"), the module exported for it -> its int8 layers and the layers it keeps float
ModesOf = Callable[[str, nn.Module], tuple[LayerModes, list[str]]]


def write_programs(model: nn.Module, spec: ExportSpec, out_dir: Path, modes_of: ModesOf | None,
                   calibration: list[tuple], say: Callable[[str], None]) -> dict[str, QuantScope]:
    """Write encoder.pte and decoder.pte of `model` (float where `modes_of` is None); returns per part the
    layers that were quantized (read back from the quantizer) and kept float."""
    s = spec.image_size
    scopes: dict[str, QuantScope] = {}

    def program(module: nn.Module, args: tuple, part: str, cal: list[tuple]) -> torch.export.ExportedProgram:
        if modes_of is None:
            with torch.no_grad():
                return torch.export.export(module.eval(), args)
        modes, kept = modes_of(part, module)
        ep, int8 = quantized_program(module, args, modes, cal)
        done = scopes.setdefault(part, QuantScope(float=sorted(kept)))
        done.int8 = sorted(set(done.int8) | set(int8))
        return ep

    say(f"executorch: exporting encoder ({spec.precision})" + (f", calibrated on {len(calibration)} images"
                                                              if calibration else ""))
    with contextlib.ExitStack() as passes:
        passes.enter_context(layer_norms_by_linear(model))
        passes.enter_context(gathered_attention_biases(model))
        ep = program(EncoderWrapper(model), (torch.randn(1, 3, s, s),), "encoder", calibration)
    say("executorch: lowering encoder to XNNPACK")
    (out_dir / spec.encoder_file).write_bytes(lower({caps.ENCODER_METHOD: ep}, modes_of is not None))
    dec = decoder_module(model)
    programs = {}
    for k, v in spec.decoder_variants().items():
        say(f"executorch: exporting decoder K={k}")
        with layer_norms_by_linear(model):
            programs[str(v["signature"])] = program(dec, decoder_sample(spec, k), "decoder", [])
    say("executorch: lowering the decoder methods " + ", ".join(programs) + " into one program")
    (out_dir / "decoder.pte").write_bytes(lower(programs, modes_of is not None))
    return scopes


def export_executorch(model: nn.Module, spec: ExportSpec, out_dir: Path, plan: dict, work: Path,
                      progress: Callable[[str], None] | None = None, calibration=None) -> dict:
    """Write encoder.pte and decoder.pte (methods decoder_k1, decoder_k16) into `out_dir`; returns `models`.
    int8 and fixed mixed plans quantize as `quantize.fixed_modes` says (measured plans: `mixed.export_mixed`)."""
    say = progress or (lambda msg: None)
    if spec.precision not in caps.CAPABILITIES.precisions:
        raise ValueError(f"executorch packages support precisions {', '.join(caps.CAPABILITIES.precisions)}, "
                         f"not {spec.precision!r}")
    quantized = spec.precision in ("int8", "mixed")

    def modes_of(part: str, module: nn.Module) -> tuple[LayerModes, list[str]]:
        modes, found = fixed_modes(module, plan, part)
        return modes, found.float

    cal = calibration_images(model, calibration) if quantized else []
    scopes = write_programs(model, spec, out_dir, modes_of if quantized else None, cal, say)
    return executorch_models(spec, scopes)
