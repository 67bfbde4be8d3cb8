"""Apple Core AI (`.aimodel`) export with coreai-torch, per precision.

The encoder is one `.aimodel` (function `main`); the decoder is ONE multifunction `.aimodel` with a
function per variant K (`decoder_k1`, `decoder_k16`) converted from the same (compressed) module, so
the asset stores its weights once. Inputs and outputs carry the names every target uses. Each program
is `torch.export`ed and decomposed, the decoder's mask product is rewritten (`mask_product`: a Core AI
miscompile), fp16 casts the program with coreai-opt (`cast_fp32_to_fp16`: weights, compute and the
model's inputs/outputs become float16; the runtime casts), and the compressed precisions export the
finalized coreai-opt modules of `compress.compressed_model`.

The assets need Core AI's compatibility version 27.0 (iOS / macOS 27); the converter's own value is
read back from each asset and recorded in the manifest.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from converters.backends.coreai.capabilities import (
    COMPATIBILITY_VERSION,
    DEFAULT_DECODER_K,
    ENCODER_FUNCTION,
    KNOWN_ISSUES,
    MULTIFUNCTION_MIN_OS,
)
from converters.backends.coreai.compress import COMPRESSED, compressed_model, in_eval
from converters.backends.coreai.mask_product import transpose_mask_product
from converters.examples import decoder_sample
from converters.spec import DECODER_K, ExportSpec
from converters.wrappers import EncoderWrapper, decoder_module


def _program(module: torch.nn.Module, args: tuple, fp16: bool, fix_masks: tuple[int, int] | None = None):
    """torch.export + decompositions (+ the mask-product rewrite, + fp16 casting)."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep = torch.export.export(in_eval(module), args).run_decompositions()
    if fix_masks is not None:
        transpose_mask_product(ep, *fix_masks)
    if fp16:
        from coreai_opt.casting import cast_fp32_to_fp16

        ep = cast_fp32_to_fp16(ep)
    return ep


def save_asset(programs: list[tuple], path: Path):  # noqa: ANN201
    """Convert `(exported_program, input_names, output_names, function_name)` entries into one
    `.aimodel` at `path` (a multifunction asset when there are several); returns the asset."""
    from coreai_torch import TorchConverter

    conv = TorchConverter(mode=TorchConverter.Mode.RELEASE)
    for ep, ins, outs, name in programs:
        conv.add_exported_program(ep, input_names=list(ins), output_names=list(outs), entrypoint_name=name)
    if path.exists():
        shutil.rmtree(path)
    return conv.to_coreai().save_asset(path)


def compatibility_version(asset) -> str | None:  # noqa: ANN001
    """The OS compatibility version the converter wrote into `asset` (e.g. "27.0")."""
    summary = asset.summary(include_statistics=False)
    return getattr(summary, "_compatibility_version", None)


def _io(tensors, dtype: str | None) -> list[dict]:  # noqa: ANN001
    out = [t.to_dict() for t in tensors]
    if dtype is not None:
        for e in out:
            e["dtype"] = dtype
    return out


def export_coreai(model: torch.nn.Module, spec: ExportSpec, out_dir: Path, plan: dict, work: Path,
                  progress: Callable[[str], None] | None = None) -> dict:
    """Write encoder.aimodel and the multifunction decoder.aimodel into `out_dir`; returns `models`."""
    say = progress or (lambda msg: None)
    work.mkdir(parents=True, exist_ok=True)
    fp16 = spec.precision == "fp16"
    if spec.precision in COMPRESSED:
        cm = compressed_model(model, spec, plan, progress=say)
        enc, dec = cm.encoder, cm.decoder
    else:
        enc, dec = EncoderWrapper(model), decoder_module(model)
    s = spec.image_size
    say("coreai: converting encoder")
    enc_asset = save_asset([(_program(enc, (torch.randn(1, 3, s, s),), fp16), ["image"], ["image_embeddings"],
                             ENCODER_FUNCTION)], out_dir / spec.encoder_file)
    in_names = [t.name for t in spec.decoder_inputs(1)]
    out_names = [t.name for t in spec.decoder_outputs(1)]
    num_masks = int(spec.decoder_outputs(1)[0].shape[1])
    variants = spec.decoder_variants()
    programs = []
    for k in DECODER_K:
        say(f"coreai: exporting decoder K={k}")
        programs.append((_program(dec, decoder_sample(spec, k), fp16, (num_masks, spec.low_res_size)), in_names,
                         out_names, str(variants[k]["signature"])))
    say("coreai: converting the decoder functions (weights stored once)")
    dec_asset = save_asset(programs, out_dir / str(variants[DEFAULT_DECODER_K]["file"]))
    versions = {compatibility_version(enc_asset), compatibility_version(dec_asset)}
    if versions != {COMPATIBILITY_VERSION}:
        raise RuntimeError(f"Core AI assets need compatibility version {sorted(map(str, versions))}, "
                           f"expected {COMPATIBILITY_VERSION}; update capabilities.MIN_OS")
    io_dtype = "float16" if fp16 else None
    return {
        "encoder": {"file": spec.encoder_file, "signature": ENCODER_FUNCTION,
                    "compatibility_version": COMPATIBILITY_VERSION,
                    "inputs": _io(spec.encoder_inputs(), io_dtype), "outputs": _io(spec.encoder_outputs(), io_dtype)},
        "decoder": {"variants": {str(k): dict(v) for k, v in variants.items()},
                    "multifunction": {"default_function": str(variants[DEFAULT_DECODER_K]["signature"]),
                                      "min_os": MULTIFUNCTION_MIN_OS},
                    "compatibility_version": COMPATIBILITY_VERSION,
                    "known_issues": [dict(i) for i in KNOWN_ISSUES],
                    "inputs": _io(spec.decoder_inputs("K"), io_dtype),
                    "outputs": _io(spec.decoder_outputs("K"), io_dtype)},
    }
