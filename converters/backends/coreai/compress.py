"""coreai-opt compression per precision, with the fake-quant model each package is checked against.

| precision | encoder | decoder |
|---|---|---|
| int8, mixed | `QuantizerConfig.presets.w8()` (eager) | same |
| palette4 / palette6 | `KMeansPalettizerConfig` 4 / 6 bits, 16 output channels per lookup table | same |
| w8a8-opt | `QuantizerConfig()` (graph): int8 weights and static int8 activations calibrated on 4 images | int8 weights (as int8) |

Weight-only compression runs in eager mode on the wrapper modules, so one compressed decoder serves
both K variants (the functions of the multifunction `.aimodel` share its weights). W8A8 needs a graph
(`torch.export`) for its activation observers: only the encoder (fixed shape) gets it; the decoder
keeps float activations, as the LiteRT W8A8 decoder does.

`mixed` keeps the plan's float layers float: their module paths (`converters.precision.keep_float_name`)
become `module_name_configs = {name: None}` entries (coreai-opt matches them with `re.fullmatch`).

The fake-quant model is a copy of coreai-opt's prepared model taken before `finalize` (finalize
rewrites the modules for export). The result is cached per (model, precision, plan) so the export and
the parity gate use the same compression, and `verify` rebuilds it the same way (deterministic:
max-based int8 scales, seeded k-means, fixed calibration images).
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from converters.precision import keep_float_name
from converters.spec import ExportSpec
from converters.wrappers import EncoderWrapper, decoder_module

COMPRESSED: tuple[str, ...] = ("int8", "mixed", "palette4", "palette6", "w8a8-opt")
PALETTE_BITS = {"palette4": 4, "palette6": 6}
PALETTE_GROUP = 16  # output channels per lookup table
CALIBRATION_IMAGES = 4
KMEANS_SEED = 0


@dataclass
class CompressedModel:
    """The compressed encoder/decoder modules to export, and the fake-quant reference they must match."""

    precision: str
    encoder: nn.Module            # finalized for Core AI (export this)
    decoder: nn.Module            # finalized for Core AI; any K
    fake_quant: nn.Module         # `encode_image` / `decode_prompts` with coreai-opt's fake quantization
    float_layers: list[str] = field(default_factory=list)
    recipe: dict = field(default_factory=dict)
    seconds: float = 0.0


class FakeQuantSam(nn.Module):
    """The prepared (fake-quant) encoder and decoder behind the reference model's two calls."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, config) -> None:  # noqa: ANN001
        super().__init__()
        self.encoder, self.decoder, self.config = encoder, decoder, config
        self.training = False  # the parts are in eval mode already (see `in_eval`); never switch them

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """Image [1,3,S,S] -> embedding, through the fake-quant encoder."""
        return self.encoder(x)

    def decode_prompts(self, *args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder wrapper's inputs -> (low_res_masks, iou_predictions), fake-quant."""
        return self.decoder(*args)


def float_layers(module: nn.Module, plan: dict) -> list[str]:
    """Names of the Linear/Conv layers of `module` that `plan` keeps float."""
    return [n for n, m in module.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)) and keep_float_name(plan, n)]


def _skip(names: list[str]) -> dict:
    import re

    return {re.escape(n): None for n in names}


def _weight_compressor(module: nn.Module, precision: str, skip: list[str]):  # noqa: ANN202
    from coreai_opt.palettization import KMeansPalettizer, KMeansPalettizerConfig
    from coreai_opt.quantization import Quantizer, QuantizerConfig

    if precision in PALETTE_BITS:
        cfg = KMeansPalettizerConfig.presets.w4(group_size=PALETTE_GROUP)
        if PALETTE_BITS[precision] != 4:
            cfg = _palette_config(PALETTE_BITS[precision])
        for name, value in _skip(skip).items():
            cfg.set_module_name(name, value)
        return KMeansPalettizer(module, cfg)
    cfg = QuantizerConfig.presets.w8()
    cfg.set_execution_mode("eager")
    for name, value in _skip(skip).items():
        cfg.set_module_name(name, value)
    return Quantizer(module, cfg)


def _palette_config(bits: int):  # noqa: ANN202
    from coreai_opt.palettization import (
        KMeansPalettizerConfig,
        ModuleKMeansPalettizerConfig,
        PalettizationSpec,
    )
    from coreai_opt.palettization.config.palettization_config import OpKMeansPalettizerConfig
    from coreai_opt.palettization.spec import PerGroupedChannelGranularity

    spec = PalettizationSpec(n_bits=bits, granularity=PerGroupedChannelGranularity(axis=0, group_size=PALETTE_GROUP))
    state = {k: spec for k in OpKMeansPalettizerConfig.get_default_state_spec()}
    return KMeansPalettizerConfig(global_config=ModuleKMeansPalettizerConfig(op_input_spec=None, op_output_spec=None,
                                                                             op_state_spec=state))


def _finalize(compressor, prepared: nn.Module) -> tuple[nn.Module, nn.Module]:  # noqa: ANN001
    """(finalized module for Core AI, fake-quant copy of the prepared module)."""
    from coreai_opt import ExportBackend

    reference = in_eval(copy.deepcopy(prepared))
    return in_eval(compressor.finalize(prepared, backend=ExportBackend.CoreAI)), reference


def in_eval(module: nn.Module) -> nn.Module:
    """`module` in eval mode. Graph-mode (PT2E) modules override `eval()` (it returns None there and
    their observers/fake-quant state is set by coreai-opt), so they are returned as they are."""
    if isinstance(module, torch.fx.GraphModule):
        return module
    module.eval()
    return module


def _weight_only(module: nn.Module, precision: str, args: tuple, skip: list[str]) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(KMEANS_SEED)
    compressor = _weight_compressor(copy.deepcopy(module).eval(), precision, skip)
    prepared = compressor.prepare(args)
    return _finalize(compressor, prepared)


def _w8a8_encoder(encoder: nn.Module, images: list[torch.Tensor]) -> tuple[nn.Module, nn.Module]:
    from coreai_opt.quantization import Quantizer, QuantizerConfig

    compressor = Quantizer(copy.deepcopy(encoder).eval(), QuantizerConfig())
    prepared = compressor.prepare((images[0],))
    with compressor.calibration_mode(prepared), torch.no_grad():
        for x in images:
            prepared(x)
    return _finalize(compressor, prepared)


def calibration_tensors(model: nn.Module, calibration: str | Path | None, n: int = CALIBRATION_IMAGES) -> list:
    """Preprocessed encoder inputs [1,3,S,S] of the first `n` calibration images (bundled photos by default)."""
    from tinysam.quant.calibrate import load_calibration_images, make_samples

    return [s.image for s in make_samples(model, load_calibration_images(calibration, n))]


_CACHE: dict[tuple, CompressedModel] = {}


def _plan_dict(plan) -> dict:  # noqa: ANN001
    return plan.to_dict() if hasattr(plan, "to_dict") else dict(plan)


def fake_quant_model(model: nn.Module, spec: ExportSpec, plan, calibration: str | Path | None = None,  # noqa: ANN001
                     progress: Callable[[str], None] | None = None) -> nn.Module | None:
    """`Backend.fake_quant`: coreai-opt's fake-quant model of a compressed package (None for fp32/fp16).
    Compressing here also prepares what the export then converts (cached)."""
    if spec.precision not in COMPRESSED:
        return None
    return compressed_model(model, spec, plan, calibration, progress).fake_quant


def compressed_model(model: nn.Module, spec: ExportSpec, plan: dict, calibration: str | Path | None = None,
                     progress: Callable[[str], None] | None = None) -> CompressedModel:
    """Compress `model`'s encoder and decoder for `spec.precision` under `plan` (cached; `model` is not
    modified). W8A8 calibrates on the first 4 images of `calibration` (bundled photos by default)."""
    from converters.examples import decoder_sample

    precision = spec.precision
    if precision not in COMPRESSED:
        raise ValueError(f"precision {precision!r} is not a coreai-opt compression; choose one of {COMPRESSED}")
    # Calibration is not part of the key: the first call (the package build, with the user's
    # `--calibration`) compresses, and the export inside the same build reuses that result.
    key = (id(model), precision, json.dumps(_plan_dict(plan).get("keep_float", []), sort_keys=True))
    if key in _CACHE:
        return _CACHE[key]
    say = progress or (lambda msg: None)
    start = time.perf_counter()
    enc, dec = EncoderWrapper(model).eval(), decoder_module(model).eval()
    s = model.config.image_size
    x = torch.zeros(1, 3, s, s)
    skip_enc = float_layers(enc, plan) if precision == "mixed" else []
    skip_dec = float_layers(dec, plan) if precision == "mixed" else []
    recipe: dict = {"tool": "coreai-opt"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if precision == "w8a8-opt":
            images = calibration_tensors(model, calibration)
            say(f"coreai: W8A8 encoder (coreai-opt QuantizerConfig(), calibrated on {len(images)} images)")
            enc_final, enc_fq = _w8a8_encoder(enc, images)
            recipe.update({"encoder": "QuantizerConfig() graph mode, int8 weights + static int8 activations",
                           "calibration": {"source": "bundled" if calibration is None else "directory",
                                           "images": len(images)},
                           "decoder": "QuantizerConfig.presets.w8() eager (int8 weights, float activations)"})
            dec_precision = "int8"
        else:
            say(f"coreai: compressing the encoder ({precision}, coreai-opt)")
            enc_final, enc_fq = _weight_only(enc, precision, (x,), skip_enc)
            dec_precision = precision
            recipe["weights"] = (f"KMeansPalettizer {PALETTE_BITS[precision]}-bit, {PALETTE_GROUP} channels per table"
                                 if precision in PALETTE_BITS else "QuantizerConfig.presets.w8() eager")
        say(f"coreai: compressing the decoder ({dec_precision}, coreai-opt)")
        dec_final, dec_fq = _weight_only(dec, dec_precision, decoder_sample(spec, 1), skip_dec)
    out = CompressedModel(precision, enc_final, dec_final, FakeQuantSam(enc_fq, dec_fq, model.config),
                          [f"encoder: {n}" for n in skip_enc] + [f"decoder: {n}" for n in skip_dec], recipe,
                          time.perf_counter() - start)
    _CACHE.clear()  # one model at a time: the compressed copies are as large as the model
    _CACHE[key] = out
    return out
