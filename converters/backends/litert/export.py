"""LiteRT (.tflite) export: float conversion with litert-torch, precision with litert-quantizer.

LiteRT has no dynamic shapes, so the decoder is one file with one signature per K (`k1`, `k16`).
Signature tensors are named `args_N` / `output_N` by the converter; the manifest maps them.
Each float file loses its TRANSPOSE/RESHAPE runs that move no element (`converters.backends.litert.layout`)
and gets every layer output named after its layer (`converters.backends.litert.names`, which name-based
quantization rules need) before any precision step.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import torch

from converters.backends.litert.compact import compact_tflite_biases
from converters.backends.litert.flatbuffer import tensor_name
from converters.backends.litert.layout import collapse_layout_chains
from converters.backends.litert.names import name_layer_outputs
from converters.backends.litert.recipes import CONV_OPS, KIND_OPS, WEIGHT_OPS
from converters.examples import decoder_sample, encoder_sample, fast_decoder_sample
from converters.fast_decoder import DecoderPrep, FastPromptDecoder
from converters.logs import quiet
from converters.precision import PrecisionPlan, keep_float_ops, weight_rules, without_top_module
from converters.spec import DECODER_K, ExportSpec
from converters.wrappers import EncoderWrapper, decoder_module
from mobile_runtime.package_format import FAST_SLOTS

_FLOAT_CACHE: dict[tuple, bytes] = {}  # (model fingerprint, part) -> float .tflite bytes, last model only


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 over the model's state (names, shapes, values) and config."""
    import hashlib

    h = hashlib.sha256(repr(model.config).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _cached_float(key: tuple, dst: Path, build) -> None:
    """Write the float model for `key` to `dst`, converting only if this process has not already."""
    if key not in _FLOAT_CACHE:
        build(dst)
        if len(_FLOAT_CACHE) >= 2 and not any(k[0] == key[0] for k in _FLOAT_CACHE):
            _FLOAT_CACHE.clear()
        _FLOAT_CACHE[key] = dst.read_bytes()
    else:
        dst.write_bytes(_FLOAT_CACHE[key])


_GROUP_END = r"(\.|$)"  # suffix of plan rules that select a whole module (tinysam.quant.qmodel.group_regex)


def module_lists(model: torch.nn.Module) -> set[str]:
    """Paths of the model's ModuleLists (their own names do not appear in LiteRT tensor names)."""
    return {name for name, m in model.named_modules() if isinstance(m, torch.nn.ModuleList)}


def tflite_module_regex(pattern: str, lists: set[str] | None = None) -> str:
    """Plan module regex (`a\\.b`) -> LiteRT tensor-name regex.

    LiteRT names carry the module path as `pkg.Class_attr/pkg.Class_attr/...`, so each path part
    appears after an underscore, with any number of levels in between. Items of a ModuleList
    appear as `Class_<index>` without the list's own name (`layers.2` -> `BasicLayer_2`), items of
    a Sequential under the Sequential's name (`neck.2` -> `Sequential_neck/Conv2d_2`). `lists` names
    the ModuleList paths (`module_lists(model)`); without it, a list name before an index is optional.
    A rule ending in `(\\.|$)` (a whole module) must end at a path boundary (`blocks.1` is not `blocks.10`).
    """
    whole = pattern.endswith(_GROUP_END)
    parts = (pattern[: -len(_GROUP_END)] if whole else pattern).split(r"\.")
    out = ""
    i = 0
    while i < len(parts):
        if i + 1 < len(parts) and parts[i + 1].isdigit():  # container + index: the index is one level down
            path = ".".join(parts[: i + 1]).replace("\\", "")
            if lists is None:
                container = f"(?:{parts[i]}/[^/;]*?_)?"
            else:
                container = "" if path in lists else f"{parts[i]}/[^/;]*?_"
            out += ("/[^/;]*?_" if out else "_") + container + parts[i + 1]
            i += 2
        else:
            out += ("/[^;]*?_" if out else "_") + parts[i]
            i += 1
    return out + (r"(?=[/;]|$)" if whole else "")


def _recipe(precision: str, plan: PrecisionPlan, lists: set[str] | None = None, src: Path | None = None):
    """An litert-quantizer recipe for `precision` under `plan` (None for fp32); `lists`: see
    tflite_module_regex; `src`: the float file, whose tensor names a module rule is matched against."""
    from litert_quantizer import qtyping, recipe_manager
    from litert_quantizer.algorithm_manager import AlgorithmName

    op = qtyping.TFLOperationName
    rm = recipe_manager.RecipeManager()
    if precision == "fp32":
        return None
    fp16 = qtyping.OpQuantizationConfig(  # fp16 weights, float compute
        weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
        compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True)
    if precision == "fp16":
        for name in WEIGHT_OPS:
            rm.add_quantization_config(".*", op(name), fp16, AlgorithmName.FLOAT_CASTING)
        return rm.get_quantization_recipe()
    from converters.backends.litert.w8a8_quantize import weight_only_config

    # int8 weights, float compute (an explicit DEQUANTIZE of each weight): every layer of a mixed
    # plan; the convolutions of int8, whose dynamic-range form runs outside XNNPACK (a 1024 px
    # TinySAM encoder with dynamic-range convolutions was no faster than fp32)
    for name in WEIGHT_OPS if precision == "mixed" else CONV_OPS:
        rm.add_quantization_config(".*", op(name), weight_only_config(), AlgorithmName.MIN_MAX_UNIFORM_QUANT)
    if precision == "int8":  # FULLY_CONNECTED dynamic-range: XNNPACK quantizes its input per row at run time
        rm.add_dynamic_config(".*", op.FULLY_CONNECTED, 8)
    # BATCH_MATMUL with int8 weights fails to prepare at load time: keep it float.
    rm.add_quantization_config(".*", op.BATCH_MATMUL, None, AlgorithmName.NO_QUANTIZE)
    for name in keep_float_ops(plan, KIND_OPS):
        rm.add_quantization_config(".*", op(name), None, AlgorithmName.NO_QUANTIZE)
    names = tensor_names(src) if src is not None and any(r.module is not None for r in weight_rules(plan)) else []
    for rule in weight_rules(plan):
        if rule.module is None:
            continue
        rx = file_module_regex(rule.module, names, lists)
        rm.add_quantization_config(rx, op.ALL_SUPPORTED, None, AlgorithmName.NO_QUANTIZE)
        if rule.precision == "fp16":  # kept layers of a measured plan: fp16 weights, float compute
            for name in WEIGHT_OPS:
                rm.add_quantization_config(rx, op(name), fp16, AlgorithmName.FLOAT_CASTING)
    return rm.get_quantization_recipe()


def _apply_precision(src: Path, dst: Path, precision: str, plan: PrecisionPlan, lists: set[str] | None = None) -> None:
    recipe = _recipe(precision, plan, lists, src)
    if recipe is None:
        shutil.copyfile(src, dst)
        return
    from litert_quantizer import quantizer

    with quiet():
        q = quantizer.Quantizer(str(src))
        q.load_quantization_recipe(recipe)
        result = q.quantize(enable_progress_report=False)
        result.export_model(str(dst), overwrite=True)


def _signature_io(spec: ExportSpec, k: int | str) -> tuple[list[dict], list[dict]]:
    ins = [dict(t.to_dict(), name=f"args_{i}", logical_name=t.name) for i, t in enumerate(spec.decoder_inputs(k))]
    outs = [dict(t.to_dict(), name=f"output_{i}", logical_name=t.name)
            for i, t in enumerate(spec.decoder_outputs(k))]
    return ins, outs


def float_encoder(model: torch.nn.Module, spec: ExportSpec, dst: Path) -> None:
    """Write the float (fp32) LiteRT encoder of `model` to `dst` (converted once per model and process)."""
    import litert_torch


    def build(path: Path) -> None:
        with quiet():
            litert_torch.convert(EncoderWrapper(model).eval(), encoder_sample(spec)).export(str(path))
        collapse_layout_chains(path)
        name_layer_outputs(path)

    _cached_float((model_fingerprint(model), "encoder"), dst, build)


def float_decoder(model: torch.nn.Module, spec: ExportSpec, dst: Path) -> None:
    """Write the float (fp32) LiteRT decoder of `model` (signatures k1, k16, and with the split decoder
    prep and fast_k{K}) to `dst` (converted once)."""
    import litert_torch

    split = spec.split_decoder

    def build(path: Path) -> None:
        dec = decoder_module(model).eval()
        with quiet():
            builder = litert_torch
            for k in DECODER_K:
                builder = builder.signature(f"k{k}", dec, decoder_sample(spec, k))
            if split:
                prep, fast = spec.split_decoder_variants()
                builder = builder.signature(str(prep["signature"]), DecoderPrep(model).eval(),
                                            decoder_sample(spec, 1)[:1])
                for k, v in fast.items():
                    builder = builder.signature(str(v["signature"]), FastPromptDecoder(model).eval(),
                                                fast_decoder_sample(spec, k))
            builder.convert().export(str(path))
        collapse_layout_chains(path)
        name_layer_outputs(path)

    _cached_float((model_fingerprint(model), "decoder_split" if split else "decoder"), dst, build)


def tflite_models(spec: ExportSpec) -> dict:
    """The manifest's `models` section of a LiteRT package (tensor names `args_N` / `output_N` mapped)."""
    enc_in = [dict(t.to_dict(), name="args_0", logical_name=t.name) for t in spec.encoder_inputs()]
    enc_out = [dict(t.to_dict(), name="output_0", logical_name=t.name) for t in spec.encoder_outputs()]
    dec_in, dec_out = _signature_io(spec, "K")
    variants = {str(k): {"file": v["file"], "signature": v["signature"]} for k, v in spec.decoder_variants().items()}
    models = {
        "encoder": {"file": spec.encoder_file, "signature": "serving_default", "inputs": enc_in, "outputs": enc_out},
        "decoder": {"file": "decoder.tflite", "variants": variants, "inputs": dec_in, "outputs": dec_out},
    }
    if spec.split_decoder:
        prep, fast = spec.split_decoder_variants()
        models["decoder_prep"] = {
            "file": prep["file"], "signature": prep["signature"],
            "inputs": [dict(t.to_dict(), name="args_0", logical_name=t.name) for t in spec.prep_inputs()],
            "outputs": [dict(t.to_dict(), name=f"output_{i}", logical_name=t.name)
                        for i, t in enumerate(spec.prep_outputs())]}
        models["decoder_fast"] = {
            "variants": {str(k): {"file": v["file"], "signature": v["signature"]} for k, v in fast.items()},
            "inputs": [dict(t.to_dict(), name=f"args_{i}", logical_name=t.name)
                       for i, t in enumerate(spec.fast_decoder_inputs("K"))],
            "outputs": [dict(t.to_dict(), name=f"output_{i}", logical_name=t.name)
                        for i, t in enumerate(spec.decoder_outputs("K"))],
            "slots": FAST_SLOTS}
    return models


def export_tflite(model: torch.nn.Module, spec: ExportSpec, out_dir: Path, plan: PrecisionPlan, work: Path,
                  progress=None) -> dict:
    """Write encoder.tflite and decoder.tflite (signatures k1, k16) into `out_dir`.

    Returns the manifest's `models` section for these files.
    """
    say = progress or (lambda msg: None)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    say("tflite: converting encoder")
    enc_fp32 = work / "encoder_fp32.tflite"
    float_encoder(model, spec, enc_fp32)
    say(f"tflite: encoder -> {spec.precision}")
    lists = module_lists(model)
    _apply_precision(enc_fp32, out_dir / spec.encoder_file, spec.precision, plan, lists)
    compact_tflite_biases(out_dir / spec.encoder_file, model)

    say("tflite: converting decoder (signatures " + ", ".join(f"k{k}" for k in DECODER_K) + ")")
    dec_fp32 = work / "decoder_fp32.tflite"
    float_decoder(model, spec, dec_fp32)
    say(f"tflite: decoder -> {spec.precision}")
    _apply_precision(dec_fp32, out_dir / "decoder.tflite", spec.precision, plan, lists)
    return tflite_models(spec)


def tensor_names(path: Path) -> list[str]:
    """All tensor names of a .tflite file, every subgraph (to check which layers a plan matched)."""
    from ai_edge_litert.tools import flatbuffer_utils as fb

    return [tensor_name(t) for sg in fb.read_model(str(path)).subgraphs for t in sg.tensors]


def file_module_regex(pattern: str, names: list[str], lists: set[str] | None = None) -> str:
    """`tflite_module_regex(pattern)`, or, when no tensor of the file (`names`) matches it, the regex of
    the pattern without its top module (`converters.precision.without_top_module`)."""
    rx = tflite_module_regex(pattern, lists)
    inner = without_top_module(pattern)
    if inner is None or matches(rx, names):
        return rx
    return tflite_module_regex(inner, None if lists is None else {p.split(".", 1)[1] for p in lists if "." in p})


def matches(regex: str, names: list[str]) -> list[str]:
    """Names matched by a LiteRT regex (search semantics, as the quantizer uses)."""
    rx = re.compile(regex)
    return [n for n in names if rx.search(n)]
