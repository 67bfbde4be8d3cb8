"""ExportSpec: the one description of what a deployment package contains.

Signatures (names, shapes, dtypes, meanings) come from the model family's export adapter
(`converters.adapters`), preprocessing constants from the model config, decoder variants, file
extension and minimum OS from the target's backend (`converters.backends`), the package format's
constants from `mobile_runtime.package_format`; every converter, the parity check and the manifest
read them from here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from converters.backends.registry import TARGETS, canonical_target, get_backend
from mobile_runtime.package_format import (
    DECODER_K,
    FAST_DECODER_K,
    FORMAT_VERSION,
    LABEL_MEANINGS,
    MASK_INPUTS,
    N_SLOTS,
    PRECISIONS,
    TensorSpec,
)
from tinysam.config import ModelConfig


class _ByTarget(Mapping):
    """Read-only map target -> one value of its backend (looked up in the registry when read)."""

    def __init__(self, read: Callable) -> None:
        self._read = read

    def __getitem__(self, target: str):
        return self._read(get_backend(target))

    def __iter__(self) -> Iterator[str]:
        return iter(TARGETS)

    def __len__(self) -> int:
        return len(TARGETS)


EXTENSIONS: Mapping[str, str] = _ByTarget(lambda b: b.capabilities.extension)
MIN_OS: Mapping[str, str] = _ByTarget(lambda b: b.capabilities.min_os)

# Parity gates per precision. The mask-IoU mean (masks at logit threshold 0) is the gate the
# user cares about; the other numbers are reported, and gate only where given.
PARITY_THRESHOLDS: dict[str, dict[str, float]] = {
    "fp32": {"mask_iou_mean": 0.999, "embedding_rel_error": 1e-3},
    "fp16": {"mask_iou_mean": 0.99, "embedding_rel_error": 2e-2},
    "int8": {"mask_iou_mean": 0.95},
    "mixed": {"mask_iou_mean": 0.95},
    "w8a8": {"mask_iou_mean": 0.90},
    # Core AI only (coreai-opt), set below what was measured at 128 px (trained TinySAM, 2 bundled photos;
    # docs/coreai.md): palette6 0.975, palette4 0.878. Those packages are also held to their own fake-quant
    # model (the Core AI capabilities' fake_quant_thresholds), the tight gate.
    "palette6": {"mask_iou_mean": 0.90},
    "palette4": {"mask_iou_mean": 0.80},
    "w8a8-opt": {"mask_iou_mean": 0.85},
}
# W8A8 packages are also checked against the recipe's fake-quant model of their int8 layers
# (`converters.w8a8.package_reference`), per target (`Capabilities.fake_quant_thresholds`): the export must
# reproduce the quantization, not only stay near float. Measured at 128 px (seeded TinySAM, 2 bundled
# photos): ONNX 0.979, CoreML 0.985, LiteRT 0.952 (its int8 ops also requantize their outputs); activation
# scales x0.5 gave 0.71, weight scales x2 0.93. The seeded model is chaotic under W8A8: a 1e-7 float
# difference flips an int8 rounding that cascades (a quarter of the codes differ by the last stage), which
# bounds the agreement.
FAKE_QUANT_THRESHOLDS: Mapping[str, Mapping[str, float]] = _ByTarget(
    lambda b: dict(b.capabilities.fake_quant_thresholds))

# Precisions whose packages also hold the split decoder (`converters.fast_decoder`): the float ones. The int8
# recipes select layers by the full decoder's names and were not measured on the split graphs.
SPLIT_DECODER_PRECISIONS: tuple[str, ...] = ("fp32", "fp16")


def check_choice(kind: str, value: str, choices: tuple[str, ...]) -> str:
    """Return `value` if it is one of `choices`, else raise a one-line ValueError."""
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; choose one of: {', '.join(choices)}")
    return value


def check_target_precision(target: str, precision: str) -> None:
    """Refuse a precision `target` does not build, in one line with its reason and the ones it builds."""
    caps = get_backend(target).capabilities
    if precision not in caps.precisions:
        why = caps.refused.get(precision)
        have = [t for t in TARGETS if precision in get_backend(t).capabilities.precisions]
        raise ValueError(f"--precision {precision} is not supported for {target}" + (f" ({why})" if why else "")
                         + f"; {target} supports: {', '.join(caps.precisions)}"
                         + (f"; {precision} is exported by: {', '.join(have)}" if have else ""))


def parse_targets(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """'coreml,tflite' / 'all' / ['onnx'] -> ordered, de-duplicated list of targets."""
    items = text.split(",") if isinstance(text, str) else list(text)
    items = [t.strip().lower() for t in items if t.strip()]
    if not items:
        raise ValueError("no target given; choose from: all, " + ", ".join(TARGETS))
    if "all" in items:
        return list(TARGETS)
    out: list[str] = []
    for t in map(canonical_target, items):
        if t not in out:
            out.append(t)
    return out


@dataclass(frozen=True)
class ExportSpec:
    """What one package (model x target x precision) exports, and how an app must call it."""

    config: ModelConfig
    target: str
    precision: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", canonical_target(self.target))
        check_choice("precision", self.precision, PRECISIONS)
        check_target_precision(self.target, self.precision)

    @property
    def backend(self):  # noqa: ANN201 - converters.backends.base.Backend
        """The export backend of this target (`converters.backends`)."""
        return get_backend(self.target)

    # --- sizes ---------------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        """Side S of the square encoder input."""
        return self.config.image_size

    @property
    def embedding_size(self) -> int:
        """Side E of the image embedding grid (S // 16)."""
        return self.config.embedding_size

    @property
    def slots(self) -> int:
        """Point slots N per prompt (unused slots carry the empty-slot label)."""
        return N_SLOTS

    @property
    def low_res_size(self) -> int:
        """Side of the low-res mask logits (4E)."""
        return 4 * self.config.embedding_size

    @property
    def ext(self) -> str:
        """File extension of model files for this target."""
        return self.backend.capabilities.extension

    @property
    def package_name(self) -> str:
        """Directory name `<model>-<target>-<precision>`."""
        return f"{self.config.name}-{self.target}-{self.precision}"

    @property
    def thresholds(self) -> dict[str, float]:
        """Parity gates for this precision."""
        return dict(PARITY_THRESHOLDS[self.precision])

    # --- files ---------------------------------------------------------------------------
    @property
    def encoder_file(self) -> str:
        """Encoder file name inside the package."""
        return f"encoder.{self.ext}"

    def decoder_variants(self) -> dict[int, dict[str, str | None]]:
        """K -> {"file", "signature"}, as the backend packages variants (`Capabilities.decoder_packaging`):
        ONNX one file per K, LiteRT signatures ``k{K}`` of one file, CoreML functions ``decoder_k{K}`` of
        one multifunction package."""
        return self.backend.decoder_variants(DECODER_K)

    def model_files(self) -> list[str]:
        """Every model file (or directory) the package holds, in a stable order."""
        files = [self.encoder_file]
        variants = list(self.decoder_variants().values())
        if self.split_decoder:
            prep, fast = self.split_decoder_variants()
            variants += [prep, *fast.values()]
        for v in variants:
            if v["file"] not in files:
                files.append(str(v["file"]))
        files += list(self.backend.capabilities.extra_model_files)
        return files

    # --- signatures ----------------------------------------------------------------------
    @property
    def adapter(self):  # noqa: ANN201 - converters.adapters.ModelAdapter
        """What this model family exports (`converters.adapters`, chosen from `config.encoder`)."""
        from converters.adapters import adapter_for

        return adapter_for(self.config)

    def encoder_inputs(self) -> list[TensorSpec]:
        """Encoder inputs (logical names)."""
        return self.adapter.encoder_inputs(self.config)

    def encoder_outputs(self) -> list[TensorSpec]:
        """Encoder outputs (logical names)."""
        return self.adapter.encoder_outputs(self.config)

    def decoder_inputs(self, k: int | str) -> list[TensorSpec]:
        """Batched prompt decoder inputs for K prompts per call (without `MASK_INPUTS` for models that
        take no mask input: every target exports exactly these)."""
        return self.adapter.decoder_inputs(self.config, k)

    def decoder_outputs(self, k: int | str) -> list[TensorSpec]:
        """Batched prompt decoder outputs (all four mask tokens, before selection)."""
        return self.adapter.decoder_outputs(self.config, k)

    # --- the split decoder (converters.fast_decoder) ---------------------------------------------
    @property
    def split_decoder(self) -> bool:
        """Whether this package holds the split decoder: the target exports it, the model has it, and the
        precision is a float one (`SPLIT_DECODER_PRECISIONS`)."""
        from converters.fast_decoder import config_supports_fast_decoder

        return (not self.backend.capabilities.split_decoder_refused and self.precision in SPLIT_DECODER_PRECISIONS
                and config_supports_fast_decoder(self.config))

    def split_decoder_variants(self) -> tuple[dict[str, str | None], dict[int, dict[str, str | None]]]:
        """(prep {"file", "signature"}, K -> {"file", "signature"}), packaged as the decoder variants are."""
        return self.backend.split_decoder_variants(FAST_DECODER_K)

    def prep_inputs(self) -> list[TensorSpec]:
        """The prep graph's input: the image embedding."""
        return self.adapter.decoder_inputs(self.config, 1)[:1]

    def prep_outputs(self) -> list[TensorSpec]:
        """The prep graph's outputs (what the per-prompt graph takes besides the prompts)."""
        return self.adapter.prep_outputs(self.config)

    def fast_decoder_inputs(self, k: int | str) -> list[TensorSpec]:
        """The per-prompt split decoder's inputs."""
        return self.adapter.fast_decoder_inputs(self.config, k)

    def sam_onnx_inputs(self) -> list[TensorSpec]:
        """SAM's official ONNX decoder signature (N dynamic)."""
        e, lr = self.embedding_size, self.low_res_size
        ins = [
            TensorSpec("image_embeddings", (1, 256, e, e), "float32", "encoder output"),
            TensorSpec("point_coords", (1, -1, 2), "float32", "x,y in the model input frame; N dynamic"),
            TensorSpec("point_labels", (1, -1), "float32", "-1 pad, 0 neg, 1 pos, 2/3 box corners"),
            TensorSpec("mask_input", (1, 1, lr, lr), "float32", "previous low-res logits, zeros if none"),
            TensorSpec("has_mask_input", (1,), "float32", "1 if mask_input is used"),
            TensorSpec("orig_im_size", (2,), "float32", "original image (H, W)"),
        ]
        return ins if self.config.supports_mask_input else [t for t in ins if t.name not in MASK_INPUTS]

    def sam_onnx_outputs(self) -> list[TensorSpec]:
        """Outputs of SAM's official ONNX decoder signature."""
        lr = self.low_res_size
        return [
            TensorSpec("masks", (1, -1, -1, -1), "float32", "mask logits at orig_im_size"),
            TensorSpec("iou_predictions", (1, -1), "float32", "predicted IoU per returned mask"),
            TensorSpec("low_res_masks", (1, -1, lr, lr), "float32", "low-res logits, feed back as mask_input"),
        ]

    # --- manifest sections ---------------------------------------------------------------
    def preprocess_dict(self) -> dict:
        """How the app turns a photo into the encoder input."""
        cfg = self.config
        return {
            "image_size": cfg.image_size,
            "resize": cfg.resize,
            "interpolation": "pil_bilinear" if cfg.resize == "longest_side" else "torch_bilinear",
            "pixel_mean": list(cfg.pixel_mean),
            "pixel_std": list(cfg.pixel_std),
            "pad": "bottom_right_zero_after_normalize",
            "normalization_in_graph": False,
            "input_layout": "NCHW",
        }

    def postprocess_dict(self) -> dict:
        """How the app turns low-res logits into masks."""
        return {"mask_postprocess": self.config.mask_postprocess, "mask_threshold": 0.0,
                "low_res_size": self.low_res_size}

    def prompts_dict(self) -> dict:
        """Prompt assembly rules."""
        cfg = self.config
        return {
            "family": cfg.family,
            "slots": N_SLOTS,
            "labels": dict(LABEL_MEANINGS),
            "always_multimask": cfg.always_multimask,
            "supports_mask_input": cfg.supports_mask_input,
            "max_points": cfg.max_points,
        }


# the package format's names that converters read from here
__all__ = ["DECODER_K", "EXTENSIONS", "FAKE_QUANT_THRESHOLDS", "FORMAT_VERSION", "LABEL_MEANINGS", "MASK_INPUTS",
           "MIN_OS", "N_SLOTS", "PARITY_THRESHOLDS", "PRECISIONS", "TARGETS", "ExportSpec", "TensorSpec",
           "check_choice", "parse_targets"]
