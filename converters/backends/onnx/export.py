"""ONNX export: encoder, fixed-K decoders, and SAM's official decoder signature, per precision."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from converters.backends.onnx.compact import compact_file
from converters.backends.onnx.large import copy_onnx, needs_external_data, save_onnx
from converters.backends.onnx.recipes import onnx_nodes_to_exclude
from converters.backends.onnx.shared_weights import SHARED_WEIGHTS, share_weights
from converters.backends.onnx.weight_only import float_weight_nodes, quantize_weights_int8
from converters.examples import decoder_sample, encoder_sample, fast_decoder_sample
from converters.fast_decoder import DecoderPrep, FastPromptDecoder
from converters.precision import PrecisionPlan
from converters.spec import DECODER_K, ExportSpec
from converters.wrappers import EncoderWrapper, decoder_module, sam_onnx_module
from mobile_runtime.package_format import FAST_SLOTS

OPSET = 17
QUANT_OPS = ["MatMul", "Gemm"]  # int8: dynamic quantization (MatMulInteger)
CONV_OPS = ("Conv", "ConvTranspose")  # int8: weight-only (converters.backends.onnx.weight_only)


def _torch_export(module: torch.nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
                  dynamic_axes: dict | None = None) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), args, str(path), dynamo=False, opset_version=OPSET,
                          input_names=inputs, output_names=outputs, dynamic_axes=dynamic_axes,
                          do_constant_folding=True)


def _convert_precision(src: Path, dst: Path, precision: str, plan: PrecisionPlan, work: Path) -> None:
    """fp32 file `src` -> `dst` in `precision`: fp16 cast; int8 = int8 weights, MatMul/Gemm inputs quantized
    at run time (onnxruntime dynamic quantization), convolutions float compute; mixed = int8 weights per
    `plan`, float compute."""
    import onnx

    if precision == "fp32":
        copy_onnx(src, dst)
        return
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        save_onnx(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), dst)
        return
    if precision == "mixed":  # int8 weight storage, float compute (converters.backends.onnx.weight_only)
        graph = onnx.load(str(src), load_external_data=False).graph
        quantize_weights_int8(src, dst, set(onnx_nodes_to_exclude(plan, [(n.name, n.op_type) for n in graph.node])))
        return
    from onnxruntime.quantization import QuantType, quant_pre_process, quantize_dynamic

    pre = work / (src.stem + "_pre.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True,
                          save_as_external_data=needs_external_data(onnx.load(str(src), load_external_data=False)),
                          all_tensors_to_one_file=True)
    pre_model = onnx.load(str(pre), load_external_data=False)
    exclude = onnx_nodes_to_exclude(plan, [(n.name, n.op_type) for n in pre_model.graph.node])
    exclude += sorted(float_weight_nodes(pre_model.graph))
    dyn = work / (src.stem + "_dynamic.onnx")
    quantize_dynamic(str(pre), str(dyn), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=QUANT_OPS, nodes_to_exclude=exclude,
                     use_external_data_format=needs_external_data(pre_model))
    # convolutions: int8 weights, float compute (ConvInteger made a 1024 px TinySAM encoder 2x slower than fp32)
    graph = onnx.load(str(dyn), load_external_data=False).graph
    quantize_weights_int8(dyn, dst, set(exclude) | {n.name for n in graph.node if n.op_type not in CONV_OPS})


def _finish(model: torch.nn.Module, src: Path, dst: Path, precision: str, plan: PrecisionPlan, work: Path, say,
            convert: Callable[[Path, Path], None] | None = None) -> None:
    """fp32 export `src` -> `dst` in `precision` (or by `convert`), then folded constants computed in-graph again."""
    if convert is not None:
        convert(src, dst)
    else:
        _convert_precision(src, dst, precision, plan, work)
    replaced = compact_file(dst, model)
    if replaced:
        say(f"onnx: {dst.name}: computed in-graph instead of stored: "
            + ", ".join(f"{n} {kind}" for kind, n in replaced.items()))


def _entry(file: str, inputs: list, outputs: list) -> dict:
    return {"file": file, "signature": None, "inputs": [t.to_dict() for t in inputs],
            "outputs": [t.to_dict() for t in outputs]}


def export_onnx(model: torch.nn.Module, spec: ExportSpec, out_dir: Path, plan: PrecisionPlan, work: Path,
                progress=None, convert: Callable[[Path, Path], None] | None = None) -> dict:
    """Write encoder.onnx, decoder_k{K}.onnx, decoder_sam_onnx.onnx and decoder.weights into `out_dir`.

    The three decoder graphs share one copy of their weights: `decoder.weights` (ONNX external
    data; each graph points at the same offsets). Tensors the exporter folds from small parameters
    (attention-bias gathers, the dense positional encoding) are computed in-graph (`onnx_compact`).

    `convert(src, dst)`, when given, turns each fp32 graph into its package file instead of the
    precision step (the W8A8 exporter inserts the recipe's QDQ nodes this way).
    Returns the manifest's `models` section for these files (hashes are added later).
    """
    say = progress or (lambda msg: None)
    work.mkdir(parents=True, exist_ok=True)
    s = spec.image_size
    say("onnx: exporting encoder")
    enc_fp32 = work / "encoder_fp32.onnx"
    _torch_export(EncoderWrapper(model), encoder_sample(spec), enc_fp32, [t.name for t in spec.encoder_inputs()],
                  [t.name for t in spec.encoder_outputs()])
    _finish(model, enc_fp32, out_dir / spec.encoder_file, spec.precision, plan, work, say, convert)

    in_names = [t.name for t in spec.decoder_inputs(1)]
    out_names = [t.name for t in spec.decoder_outputs(1)]
    variants = spec.decoder_variants()
    for k in DECODER_K:
        say(f"onnx: exporting decoder K={k}")
        tmp = work / f"decoder_k{k}_fp32.onnx"
        _torch_export(decoder_module(model), decoder_sample(spec, k), tmp, in_names, out_names)
        _finish(model, tmp, out_dir / str(variants[k]["file"]), spec.precision, plan, work, say, convert)

    say("onnx: exporting SAM-signature decoder")
    sample = dict(zip(in_names, decoder_sample(spec, 1)))
    sample.update(point_coords=sample["point_coords"][:, :2], point_labels=sample["point_labels"][:, :2],
                  orig_im_size=torch.tensor([float(s), float(s)]))
    sam_names = [t.name for t in spec.sam_onnx_inputs()]
    tmp = work / "decoder_sam_onnx_fp32.onnx"
    _torch_export(sam_onnx_module(model), tuple(sample[n] for n in sam_names), tmp,
                  sam_names, [t.name for t in spec.sam_onnx_outputs()],
                  dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}})
    _finish(model, tmp, out_dir / "decoder_sam_onnx.onnx", spec.precision, plan, work, say, convert)

    split = _export_split_decoder(model, spec, out_dir, plan, work, say, convert) if spec.split_decoder else {}

    say("onnx: storing the decoder weights once")
    decoder_files = [str(variants[k]["file"]) for k in DECODER_K] + ["decoder_sam_onnx.onnx"]
    decoder_files += [str(v["file"]) for v in split.values() if "file" in v]
    decoder_files += [str(v["file"]) for v in split.get("decoder_fast", {}).get("variants", {}).values()]
    shared = share_weights(out_dir, decoder_files, SHARED_WEIGHTS)

    dec = _entry(str(variants[1]["file"]), spec.decoder_inputs("K"), spec.decoder_outputs("K"))
    dec["variants"] = {str(k): {"file": v["file"], "signature": None} for k, v in variants.items()}
    dec.pop("file")
    dec["weights"] = shared
    return {
        "encoder": _entry(spec.encoder_file, spec.encoder_inputs(), spec.encoder_outputs()),
        "decoder": dec,
        "sam_onnx": _entry("decoder_sam_onnx.onnx", spec.sam_onnx_inputs(), spec.sam_onnx_outputs()),
        **split,
    }


def _export_split_decoder(model: torch.nn.Module, spec: ExportSpec, out_dir: Path, plan: PrecisionPlan, work: Path,
                          say, convert) -> dict:
    """decoder_prep.onnx and decoder_fast_k{K}.onnx (`converters.fast_decoder`); their manifest entries."""
    prep, fast = spec.split_decoder_variants()
    say("onnx: exporting the split decoder's prep graph")
    tmp = work / "decoder_prep_fp32.onnx"
    _torch_export(DecoderPrep(model), decoder_sample(spec, 1)[:1], tmp, [t.name for t in spec.prep_inputs()],
                  [t.name for t in spec.prep_outputs()])
    _finish(model, tmp, out_dir / str(prep["file"]), spec.precision, plan, work, say, convert)
    in_names = [t.name for t in spec.fast_decoder_inputs(1)]
    out_names = [t.name for t in spec.decoder_outputs(1)]
    for k, v in fast.items():
        say(f"onnx: exporting the split decoder K={k}")
        tmp = work / f"decoder_fast_k{k}_fp32.onnx"
        _torch_export(FastPromptDecoder(model), fast_decoder_sample(spec, k), tmp, in_names, out_names)
        _finish(model, tmp, out_dir / str(v["file"]), spec.precision, plan, work, say, convert)
    fast_entry = {"variants": {str(k): {"file": v["file"], "signature": None} for k, v in fast.items()},
                  "inputs": [t.to_dict() for t in spec.fast_decoder_inputs("K")],
                  "outputs": [t.to_dict() for t in spec.decoder_outputs("K")], "slots": FAST_SLOTS}
    return {"decoder_prep": _entry(str(prep["file"]), spec.prep_inputs(), spec.prep_outputs()),
            "decoder_fast": fast_entry}
