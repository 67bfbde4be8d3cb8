"""The deployment package format, as types: format version, tensor roles, prompt labels, tensor specs.

Pure Python (no torch, no runtime): `converters` writes packages with it, `mobile_runtime` reads them
with it, `bench/` and `evaluation/` take target names and labels from it. `Manifest.from_dict` validates a
manifest once and names a bad field in words; `to_dict` gives the mapping back unchanged.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import Any

from mobile_runtime.backends.registry import ALIASES, KINDS
from mobile_runtime.manifest import PackageError

TARGETS: tuple[str, ...] = KINDS  # target names a package may declare (the runtimes that open them)
TARGET_ALIASES: dict[str, str] = dict(ALIASES)

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS: tuple[int, ...] = (1,)
MANIFEST_FILE = "manifest.json"

DECODER_K: tuple[int, ...] = (1, 16)  # prompts per decoder call (the variants every exporter writes)
N_SLOTS = 8  # point slots per prompt; unused slots carry LABEL.EMPTY_SLOT
# The split decoder (`models.decoder_prep` once per image, `models.decoder_fast` per prompt): the same
# function as the decoder for prompts without mask input that fit in FAST_SLOTS slots (one point and its
# pad point, or one box); trailing empty slots change nothing, so they are not computed.
FAST_DECODER_K: tuple[int, ...] = (1, 16, 64)
FAST_SLOTS = 2


class LABEL(IntEnum):
    """Point labels of the exported decoder (`point_labels`, float32 in the graphs)."""

    EMPTY_SLOT = -2  # slot removed from attention: trailing empty slots change nothing
    PAD = -1         # SAM's not-a-point padding point (joins attention)
    NEG = 0
    POS = 1
    BOX_TL = 2
    BOX_BR = 3


EMPTY_SLOT = int(LABEL.EMPTY_SLOT)

LABEL_MEANINGS: dict[str, str] = {
    str(int(LABEL.EMPTY_SLOT)): "empty slot (removed from attention)",
    str(int(LABEL.PAD)): "pad point (SAM's not-a-point; joins attention)",
    str(int(LABEL.NEG)): "negative point",
    str(int(LABEL.POS)): "positive point",
    str(int(LABEL.BOX_TL)): "box top-left",
    str(int(LABEL.BOX_BR)): "box bottom-right",
}

# Tensor roles: the logical names of the model inputs and outputs (a manifest entry's `logical_name`
# when the backend's tensor name differs, e.g. LiteRT `args_0`).
ENCODER_INPUTS: tuple[str, ...] = ("image",)
ENCODER_OUTPUTS: tuple[str, ...] = ("image_embeddings",)
DECODER_INPUTS: tuple[str, ...] = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input")
DECODER_OUTPUTS: tuple[str, ...] = ("low_res_masks", "iou_predictions")
MASK_INPUTS: tuple[str, ...] = ("mask_input", "has_mask_input")  # absent when prompts.supports_mask_input is false
PREP_INPUTS: tuple[str, ...] = ("image_embeddings",)
PREP_OUTPUTS: tuple[str, ...] = ("keys", "key_pe", "t2i_k", "t2i_v", "i2t_q")
FAST_DECODER_INPUTS: tuple[str, ...] = PREP_OUTPUTS + ("point_coords", "point_labels")

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8", "mixed", "w8a8", "palette4", "palette6", "w8a8-opt")
RESIZE_MODES: tuple[str, ...] = ("longest_side", "stretch")
MASK_POSTPROCESS_MODES: tuple[str, ...] = ("sam", "bicubic")
PROMPT_FAMILIES: tuple[str, ...] = ("sam", "efficientsam")
INPUT_LAYOUTS: tuple[str, ...] = ("NCHW", "NHWC")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of an exported model, as the app sees it."""

    name: str
    shape: tuple[int | str, ...]  # -1 = dynamic, "K" = prompts per call of the chosen variant
    dtype: str
    meaning: str

    def to_dict(self) -> dict:
        """Plain-JSON form for the manifest."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


# ---- the typed manifest --------------------------------------------------------------------------------
# `Manifest.from_dict` validates everything the runtime uses and names a bad field in words; `to_dict`
# gives back exactly the mapping it was read from (sections keep their order and any extra keys), so a
# writer that builds the dict and passes it through `Manifest` writes the same bytes.


class ManifestError(PackageError):
    """A manifest field that is missing, of the wrong type, or out of range (the message names it)."""


def _fail(where: str, what: str) -> ManifestError:
    return ManifestError(f"manifest: {where} {what}")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _positive_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x > 0


def _section(data: Mapping[str, Any], key: str, words: str) -> dict[str, Any]:
    part = data.get(key)
    if not isinstance(part, dict):
        raise _fail(words, "is missing or not an object" if part is None else "must be an object")
    return part


def _choice(part: Mapping[str, Any], key: str, words: str, choices: tuple[str, ...], default: str) -> str:
    value = part.get(key, default)
    if value not in choices:
        raise _fail(f"{words} '{key}'", f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def _flag(part: Mapping[str, Any], key: str, words: str, default: bool) -> bool:
    value = part.get(key, default)
    if not isinstance(value, bool):
        raise _fail(f"{words} '{key}'", f"must be true or false, got {value!r}")
    return value


def check_member_name(name: Any, words: str) -> str:
    """A model file name must be a plain relative path that stays inside the package."""
    if not isinstance(name, str) or not name:
        raise _fail(words, f"must name a file in the package, got {name!r}")
    parts = name.split("/")
    if name.startswith(("/", "\\")) or "\\" in name or ":" in name or any(p in ("", ".", "..") for p in parts):
        raise _fail(words, f"must be a plain relative path inside the package, got {name!r}")
    return name


@dataclass(frozen=True)
class Preprocess:
    """How the app turns a photo into the encoder input."""

    image_size: int
    resize: str
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    normalization_in_graph: bool
    input_layout: str

    @classmethod
    def from_dict(cls, part: Mapping[str, Any]) -> Preprocess:
        """Validate the `preprocess` section (defaults of packages that predate a field)."""
        w = "preprocessing"
        size = part.get("image_size")
        if not _positive_int(size):
            raise _fail(f"{w} 'image_size'", f"must be a positive int, got {size!r}")
        mean, std = part.get("pixel_mean"), part.get("pixel_std")
        if not (isinstance(mean, (list, tuple)) and len(mean) == 3 and all(map(_finite, mean))):
            raise _fail(f"{w} 'pixel_mean'", f"must be three finite numbers, got {mean!r}")
        if not (isinstance(std, (list, tuple)) and len(std) == 3 and all(_finite(s) and s > 0 for s in std)):
            raise _fail(f"{w} 'pixel_std'", f"must be three positive finite numbers, got {std!r}")
        return cls(size, _choice(part, "resize", w, RESIZE_MODES, "longest_side"),
                   tuple(float(v) for v in mean), tuple(float(v) for v in std),
                   _flag(part, "normalization_in_graph", w, False),
                   _choice(part, "input_layout", w, INPUT_LAYOUTS, "NCHW"))


@dataclass(frozen=True)
class Postprocess:
    """How the app turns low-res logits into masks."""

    mask_postprocess: str
    mask_threshold: float
    low_res_size: int

    @classmethod
    def from_dict(cls, part: Mapping[str, Any], image_size: int) -> Postprocess:
        """Validate the `postprocess` section."""
        w = "postprocessing"
        threshold = part.get("mask_threshold", 0.0)
        if not _finite(threshold):
            raise _fail(f"{w} 'mask_threshold'", f"must be a finite number, got {threshold!r}")
        low = part.get("low_res_size", image_size // 4)
        if not _positive_int(low):
            raise _fail(f"{w} 'low_res_size'", f"must be a positive int, got {low!r}")
        return cls(_choice(part, "mask_postprocess", w, MASK_POSTPROCESS_MODES, "sam"), float(threshold), low)


@dataclass(frozen=True)
class Prompts:
    """Prompt assembly rules."""

    family: str
    slots: int
    always_multimask: bool
    supports_mask_input: bool
    max_points: int | None

    @classmethod
    def from_dict(cls, part: Mapping[str, Any]) -> Prompts:
        """Validate the `prompts` section."""
        w = "prompts"
        slots = part.get("slots", N_SLOTS)
        if not _positive_int(slots):
            raise _fail(f"{w} 'slots'", f"must be a positive int, got {slots!r}")
        max_points = part.get("max_points")
        if max_points is not None and not _positive_int(max_points):
            raise _fail(f"{w} 'max_points'", f"must be a positive int or null, got {max_points!r}")
        return cls(_choice(part, "family", w, PROMPT_FAMILIES, "sam"), slots,
                   _flag(part, "always_multimask", w, False), _flag(part, "supports_mask_input", w, True),
                   max_points)


@dataclass(frozen=True)
class ModelFile:
    """One model the runtime opens: a file (or .mlpackage directory) and an optional entry point."""

    file: str
    signature: str | None
    sha256: str | None


@dataclass(frozen=True)
class ModelEntry:
    """`models.encoder` / `models.decoder`: the files (decoder: one per K) and the tensor entries."""

    variants: dict[int, ModelFile]  # encoder: {1: its file}
    inputs: tuple[Any, ...]
    outputs: tuple[Any, ...]

    @classmethod
    def from_dict(cls, entry: Any, words: str, variants: bool) -> ModelEntry:
        """Validate one model entry; `variants`: read `variants` (K -> file/signature) as the decoder does.

        A variant without `file` uses the entry's top-level `file`; a decoder without `variants` is one
        K=1 model in `file`."""
        if not isinstance(entry, dict):
            raise _fail(words, "is missing or not an object")
        raw = entry.get("variants") if variants else None
        raw = raw or {"1": {}}
        if not isinstance(raw, dict):
            raise _fail(f"{words} 'variants'", "must map a prompt count K to {file, signature}")
        out: dict[int, ModelFile] = {}
        for key, spec in raw.items():
            k = int(key) if isinstance(key, str) and key.isdigit() else None
            if not k or not isinstance(spec, dict):
                raise _fail(f"{words} variant {key!r}", "must be a prompt count K >= 1 with an object")
            name = check_member_name(spec.get("file") or entry.get("file"), f"{words} file (K={k})")
            sig = spec.get("signature", entry.get("signature") if not variants else None)
            if sig is not None and not isinstance(sig, str):
                raise _fail(f"{words} signature (K={k})", f"must be a name or null, got {sig!r}")
            out[k] = ModelFile(name, sig, spec.get("sha256", entry.get("sha256") if not variants else None))
        ins, outs = entry.get("inputs", []) or [], entry.get("outputs", []) or []
        for side, items in (("inputs", ins), ("outputs", outs)):
            if not isinstance(items, list) or not all(isinstance(e, (dict, str)) for e in items):
                raise _fail(f"{words} {side}", "must be a list of tensor entries")
            for e in items:
                if isinstance(e, dict) and not isinstance(e.get("name"), str):
                    raise _fail(f"{words} {side}", f"entry {e!r} names no tensor")
        return cls(out, tuple(ins), tuple(outs))


def _split_decoder(models: Mapping[str, Any]) -> tuple[ModelEntry | None, ModelEntry | None, int]:
    """The optional split decoder of a `models` section: (prep, fast, slots), or (None, None, FAST_SLOTS)."""
    has_prep, has_fast = "decoder_prep" in models, "decoder_fast" in models
    if has_prep != has_fast:
        raise _fail("models", "must hold both 'decoder_prep' and 'decoder_fast' or neither")
    if not has_prep:
        return None, None, FAST_SLOTS
    prep = ModelEntry.from_dict(models["decoder_prep"], "decoder prep model", variants=False)
    fast = ModelEntry.from_dict(models["decoder_fast"], "fast decoder model", variants=True)
    slots = models["decoder_fast"].get("slots", FAST_SLOTS)
    if not _positive_int(slots):
        raise _fail("fast decoder model 'slots'", f"must be a positive int, got {slots!r}")
    return prep, fast, slots


@dataclass(frozen=True)
class Manifest:
    """A package's manifest.json, validated (`from_dict`) and given back unchanged (`to_dict`)."""

    format_version: int
    target: str
    precision: str | None
    preprocess: Preprocess
    postprocess: Postprocess
    prompts: Prompts
    encoder: ModelEntry
    decoder: ModelEntry
    files: dict[str, str]
    raw: dict[str, Any] = field(repr=False, compare=False)
    decoder_prep: ModelEntry | None = None  # the split decoder: both or neither (see FAST_SLOTS)
    decoder_fast: ModelEntry | None = None
    fast_slots: int = FAST_SLOTS

    @property
    def kind(self) -> str:
        """The runtime kind that opens this package's files (aliases resolved)."""
        return TARGET_ALIASES.get(self.target, self.target)

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Validate a manifest mapping; a bad or missing field raises `ManifestError` naming it."""
        if not isinstance(data, dict):
            raise ManifestError("manifest: must be a JSON object")
        version = data.get("format_version")
        if version not in SUPPORTED_FORMAT_VERSIONS:
            raise _fail("'format_version'", f"{version!r} is not supported; this runtime reads "
                        f"{list(SUPPORTED_FORMAT_VERSIONS)}")
        target = data.get("target")
        if target not in TARGETS and target not in TARGET_ALIASES:
            raise _fail("'target'", f"{target!r} is unknown; choose one of {', '.join(TARGETS)}")
        precision = data.get("precision")
        if precision is not None and precision not in PRECISIONS:
            raise _fail("'precision'", f"must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        _section(data, "model", "model description")
        pre = Preprocess.from_dict(_section(data, "preprocess", "preprocessing"))
        post = Postprocess.from_dict(_section(data, "postprocess", "postprocessing"), pre.image_size)
        prompts = Prompts.from_dict(_section(data, "prompts", "prompts"))
        models = _section(data, "models", "models")
        encoder = ModelEntry.from_dict(models.get("encoder"), "encoder model", variants=False)
        decoder = ModelEntry.from_dict(models.get("decoder"), "decoder model", variants=True)
        prep, fast, fast_slots = _split_decoder(models)
        files = _section(data, "files", "file list")
        for name, digest in files.items():
            check_member_name(name, "file list entry")
            if not isinstance(digest, str):
                raise _fail(f"file list entry {name!r}", "must map to a sha256 hex string")
        return cls(version, target, precision, pre, post, prompts, encoder, decoder, dict(files),
                   copy.deepcopy(data), prep, fast, fast_slots)

    def to_dict(self) -> dict[str, Any]:
        """The manifest mapping (as read, or as the converter built it)."""
        return copy.deepcopy(self.raw)
