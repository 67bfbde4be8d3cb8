"""The interface every export target implements: `Backend` (what it does) and `Capabilities` (what it can).

A backend is one folder `converters/backends/<name>/` whose `__init__.py` defines `BACKEND`, and one
line in `converters/backends/registry.py`. Its `__init__.py` stays light (no torch, no exporter
toolchain at import time): `export` / `export_w8a8` import the heavy modules when they run.

Backends never import each other; what two of them share lives in a converters module named for what
it does (`converters.examples`, `converters.logs`, `converters.wrappers`, `converters.precision`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# How a format keeps the decoder's K variants (prompts per call):
DECODER_PACKAGING: tuple[str, ...] = (
    "graphs",      # one model file per K (ONNX: decoder_k1.onnx, decoder_k16.onnx)
    "signatures",  # signatures of one file (LiteRT: decoder.tflite, k1 / k16)
    "functions",   # functions of one multifunction model (CoreML: decoder.mlpackage, decoder_k1 / ...)
    "methods",     # methods of one program (e.g. a .pte with one method per K)
)

# Layer kinds of the W8A8 recipe (`tinysam.quant`): Linear and Conv layers carry weights; "matmul" are
# the attention products (q @ k^T, softmax @ v).
LAYER_KINDS: tuple[str, ...] = ("linear", "conv", "matmul")

# Signatures of the two export entry points (documented in docs/interfaces.md):
#   export(model, spec, out_dir, plan, work, progress) -> manifest `models` section
#   export_w8a8(qmodel, spec, out_dir, plan, work, progress, calibration) -> (models, layer split)
ExportFn = Callable[..., dict]
ExportW8A8Fn = Callable[..., tuple[dict, dict]]
#   fake_quant(model, spec, plan, calibration, progress) -> the torch model (encode_image / decode_prompts) that
#   simulates what the target's compressed files compute, or None; parity also gates the package against it
FakeQuantFn = Callable[..., Any]


@dataclass(frozen=True)
class W8A8Support:
    """How a format holds the W8A8 recipe's layers (`converters.w8a8.layer_split` reads it).

    `int8_matmul`: attention products can take int8 operands; else they stay float with
    `matmul_float_reason`. `static_activation_prefixes`: module-path prefixes whose layers can take the
    recipe's static int8 input scales ("" = every layer); the other weight layers get int8 weights and
    float inputs (`weights_only_reason`). `twin_uniform`: how an input the recipe quantizes with two
    ranges (post-GELU) is computed: "float", or "dynamic_int8" (quantized at run time, as
    `dynamic_activation_note` says).
    """

    int8_matmul: bool = True
    matmul_float_reason: str = ""
    static_activation_prefixes: tuple[str, ...] = ("",)
    weights_only_reason: str = ""
    twin_uniform: str = "float"
    dynamic_activation_note: str = ""  # how "dynamic_int8" inputs are computed (manifest `dynamic_activations`)


# Per-layer-group compute modes of a mixed plan (`converters.mixed_plan`), slowest/most accurate first:
GROUP_MODES: tuple[str, ...] = (
    "float",          # float weights, float compute
    "int8_weights",   # int8 weights stored, float compute (dequantized weights)
    "dynamic_int8",   # int8 weights, input quantized per row at run time (dynamic-range kernels)
    "static_int8",    # int8 weights, static int8 input with the recipe's searched scale
)


@dataclass(frozen=True)
class MixedSupport:
    """Which `GROUP_MODES` a target runs for each layer kind in a mixed package (`converters.mixed_plan`).

    `linear` / `conv` / `matmul`: modes per `LAYER_KINDS` entry (attention products have no weights:
    "float" or "static_int8"). `twin_input`: modes for a layer whose input the recipe quantizes
    twin-uniform (post-GELU fc2; no one-scale int8 form, so never "static_int8"). `activation_prefixes`:
    module-path prefixes where int8 activations (dynamic or static) are possible; elsewhere only "float"
    and "int8_weights". `static_prefixes`: where "static_int8" is possible (a program whose int8 outputs need
    ranges observed on calibration data it has). `speed`: "measured" (the target's runtime runs here and its speed table is
    measured) or a sentence saying why speed is not measurable here. `float_weight_bytes`: how the
    package stores the weights of the plan's float layers (4 float32, 2 float16 with float compute).
    """

    linear: tuple[str, ...] = ("float", "int8_weights")
    conv: tuple[str, ...] = ("float", "int8_weights")
    matmul: tuple[str, ...] = ("float",)
    twin_input: tuple[str, ...] = ("float", "int8_weights")
    activation_prefixes: tuple[str, ...] = ("",)
    static_prefixes: tuple[str, ...] = ("",)
    speed: str = "measured"
    float_weight_bytes: int = 4  # bytes per weight of a layer the plan keeps float (2: stored float16)

    def modes(self, kind: str, name: str, twin: bool) -> tuple[str, ...]:
        """Modes this target runs for layer `name` of recipe kind `kind` ("linear", "conv2d", ...)."""
        base = {"linear": self.linear, "conv2d": self.conv, "conv_transpose2d": self.conv,
                "matmul": self.matmul}.get(kind)
        if base is None:
            raise ValueError(f"unknown layer kind {kind!r}; known: linear, conv2d, conv_transpose2d, matmul")
        if twin:
            base = tuple(m for m in base if m in self.twin_input)
        if not any(name.startswith(p) for p in self.activation_prefixes):
            base = tuple(m for m in base if m in ("float", "int8_weights"))
        if not any(name.startswith(p) for p in self.static_prefixes):
            base = tuple(m for m in base if m != "static_int8")
        return tuple(m for m in GROUP_MODES if m in base) or ("float",)

    @property
    def activation_modes(self) -> bool:
        """True if some layer kind can run with int8 activations here."""
        return any(m in ("dynamic_int8", "static_int8") for m in self.linear + self.conv + self.matmul)


@dataclass(frozen=True)
class Capabilities:
    """What a target's packages hold and need (typed; the manifest and docs are written from it)."""

    extension: str                            # model file extension, without the dot ("onnx", "mlpackage")
    decoder_packaging: str                    # one of DECODER_PACKAGING
    min_os: str                               # what the phone needs (manifest `min_os`)
    precisions: tuple[str, ...]               # precisions this target exports
    int8_weight_layers: tuple[str, ...]       # LAYER_KINDS it can run with int8 weights
    int8_activation_layers: tuple[str, ...]   # LAYER_KINDS it can run with int8 activations (w8a8)
    fake_quant_thresholds: Mapping[str, float] = field(default_factory=dict)  # w8a8 gate vs the fake-quant model
    w8a8: W8A8Support = field(default_factory=W8A8Support)
    extra_model_files: tuple[str, ...] = ()   # model files beyond encoder + decoder variants
    refused: Mapping[str, str] = field(default_factory=dict)  # precision it does not build -> why (one line)
    runtime_requirements: Mapping[str, str] = field(default_factory=dict)  # what the app links (manifest)
    # why the split decoder (`converters.fast_decoder`: per-image prep + per-prompt graph) is not exported;
    # "" = it is, packaged like the decoder variants (`Backend.split_decoder_variants`)
    split_decoder_refused: str = ""
    mixed: MixedSupport = field(default_factory=MixedSupport)  # per-group modes of mixed packages


@dataclass(frozen=True)
class AppliedTables:
    """What a target's files hold per precision, in that format's terms (manifest `precision_plan.applied`).

    Each table maps "weights" / "activations" (/ "runtime") to a sentence. `searched_scales` says where
    the W8A8 recipe's searched scales go for the weight-only int8/mixed packages.
    """

    int8: Mapping[str, str]
    mixed: Mapping[str, str]
    w8a8: Mapping[str, str]
    searched_scales: str


@dataclass(frozen=True)
class Backend:
    """One export target.

    - `name`: the target name written into packages (`manifest.target`) and given on the CLI.
    - `export(model, spec, out_dir, plan, work, progress=None) -> dict`: write the model files of
      `spec` (fp32/fp16/int8/mixed) into `out_dir` (scratch files go to `work`); returns the manifest's
      `models` section (hashes are added by `converters.package`).
    - `export_w8a8(qmodel, spec, out_dir, plan, work, progress=None, calibration=None) -> (models,
      layers)`: the W8A8 files from the recipe's fake-quant model and the layer split they hold; None
      when the target has no W8A8 export.
    - `runtime_kind`: the `mobile_runtime.backends` kind that opens its files.
    - `kind_ops`: plan rule kind ("normalization", "softmax") -> the format's op types it keeps float.
    - `applied`: the per-precision "what the files hold" tables.
    - `calibrates`: `export` also takes `calibration=` (the `--calibration` directory, None = the bundled
      photos), for formats whose int8 files hold activation ranges calibrated on images.
    - `export_mixed(qmodel, spec, out_dir, plan, work, progress=None, calibration=None) -> (models, layers)`:
      a mixed package whose plan gives each layer a `GROUP_MODES` entry (`plan.data["layer_modes"]`), from the
      recipe's fake-quant model; None: the target's mixed packages hold int8 weights and float compute only.
    - `fake_quant(model, spec, plan, calibration=None, progress=None)`: for targets whose own compression
      (not the W8A8 recipe) changes the weights, the fake-quant torch model of a package; `build_package`
      and `verify` gate the package against it too (`capabilities.fake_quant_thresholds`). None: no such model.
    """

    name: str
    capabilities: Capabilities
    export: ExportFn
    runtime_kind: str
    applied: AppliedTables
    export_w8a8: ExportW8A8Fn | None = None
    kind_ops: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    calibrates: bool = False
    fake_quant: FakeQuantFn | None = None
    export_mixed: ExportW8A8Fn | None = None

    def decoder_variants(self, ks: tuple[int, ...]) -> dict[int, dict[str, str | None]]:
        """K -> {"file", "signature"} for the decoder variants, from `capabilities.decoder_packaging`."""
        ext, how = self.capabilities.extension, self.capabilities.decoder_packaging
        if how == "graphs":
            return {k: {"file": f"decoder_k{k}.{ext}", "signature": None} for k in ks}
        if how == "signatures":
            return {k: {"file": f"decoder.{ext}", "signature": f"k{k}"} for k in ks}
        if how in ("functions", "methods"):
            return {k: {"file": f"decoder.{ext}", "signature": f"decoder_k{k}"} for k in ks}
        raise ValueError(f"backend {self.name}: unknown decoder packaging {how!r}; "
                         f"choose one of: {', '.join(DECODER_PACKAGING)}")


    def split_decoder_variants(self, ks: tuple[int, ...]) -> tuple[dict[str, str | None], dict[int, dict[str, str | None]]]:
        """(prep {"file", "signature"}, K -> {"file", "signature"}) of the split decoder, packaged as the
        decoder variants are: ONNX graphs `decoder_prep` / `decoder_fast_k{K}`, LiteRT signatures `prep` /
        `fast_k{K}` of decoder.tflite, functions or methods `decoder_prep` / `decoder_fast_k{K}`."""
        ext, how = self.capabilities.extension, self.capabilities.decoder_packaging
        if how == "graphs":
            return ({"file": f"decoder_prep.{ext}", "signature": None},
                    {k: {"file": f"decoder_fast_k{k}.{ext}", "signature": None} for k in ks})
        if how == "signatures":
            return ({"file": f"decoder.{ext}", "signature": "prep"},
                    {k: {"file": f"decoder.{ext}", "signature": f"fast_k{k}"} for k in ks})
        if how in ("functions", "methods"):
            return ({"file": f"decoder.{ext}", "signature": "decoder_prep"},
                    {k: {"file": f"decoder.{ext}", "signature": f"decoder_fast_k{k}"} for k in ks})
        raise ValueError(f"backend {self.name}: unknown decoder packaging {how!r}; "
                         f"choose one of: {', '.join(DECODER_PACKAGING)}")


def run_lazily(module: str, function: str) -> Callable[..., Any]:
    """A function that imports `module` only when called, then calls its `function` (keeps backend
    `__init__` modules free of torch and the exporter toolchains)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        import importlib

        return getattr(importlib.import_module(module), function)(*args, **kwargs)

    call.__name__ = function
    call.__qualname__ = f"{module}.{function}"
    return call


__all__ = ["DECODER_PACKAGING", "GROUP_MODES", "LAYER_KINDS", "AppliedTables", "Backend", "Capabilities",
           "MixedSupport", "W8A8Support",
           "run_lazily"]
