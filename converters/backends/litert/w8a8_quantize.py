"""LiteRT W8A8 with the Q-TinySAM recipe's activation scales (static int8 FULLY_CONNECTED / CONV_2D).

What LiteRT (litert-quantizer 0.11.0, ai-edge-litert 2.3.0) can take, and what it cannot:
- activation scales: yes. `Quantizer.quantize(calibration_result)` takes per-tensor min/max
  statistics; int8 activations are asymmetric there, and min = -128 s, max = 127 s gives exactly
  scale s with zero point 0, i.e. our symmetric quantizer. Each recipe layer's input tensor gets it.
- weight scales: no public API. The quantizer computes symmetric per-channel max-based scales
  itself (`tensor_zp_scale_from_min_max`). `snapped_copy` puts the weights on the recipe's grid
  before conversion, so that the max-based scale is the recipe's (see there).
- outputs: a static int8 FULLY_CONNECTED/CONV_2D also writes int8, so every such op requantizes
  its output with a calibrated range (min/max over the calibration images, `output_ranges`), which
  the fake-quant model does not do.
- twin-uniform inputs (post-GELU fc2) have no static int8 form (one scale): their FULLY_CONNECTED is
  dynamic-range instead, so XNNPACK quantizes each input row to its own asymmetric range at run time
  (`tinysam.quant.quantizer.fake_quant_rows` models it; at 1024 px this took the encoder from 261 to
  216 ms with the same mask agreement as float fc2 inputs). Attention products (BATCH_MATMUL, whose
  int8 form fails to prepare in LiteRT 2.3) and post-softmax probabilities stay float.
- the PT2E route (`litert_torch.quantize.pt2e_quantizer`) calibrates its own observers; it has no
  entry for given scales either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from converters.backends.litert.flatbuffer import builtin_code, tensor_name
from converters.backends.litert.names import LAYER_OPS
from converters.backends.litert.recipes import WEIGHT_OPS
from converters.logs import quiet

QUANT_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")


def layer_ops(tflite_path: Path, qmodel: torch.nn.Module, prefix: str) -> dict[str, tuple[str, str, str]]:
    """Our calibrated layers under `prefix` -> (input, output, scope regex) of their LiteRT op, found by
    weight values (`op_match`: `qmodel` holds the weights converted into the file, `snapped_copy`);
    input/output name the op in the first subgraph that has it, the regex selects all of its ops."""
    from converters.backends.litert.op_match import layer_ops_by_weight, scope_regex
    from tinysam.quant.qmodel import quant_layers

    layers = [n for n, m in quant_layers(qmodel).items() if n.startswith(prefix) and m.calibrated and m.kind != "matmul"]
    found = layer_ops_by_weight(tflite_path, qmodel, layers)
    return {n: (ops[0].input, ops[0].output, scope_regex(ops)) for n, ops in found.items()}


def weight_only_config():  # noqa: ANN202 - an litert-quantizer OpQuantizationConfig
    """int8 per-channel symmetric weights, float compute (an explicit DEQUANTIZE of the weights)."""
    from litert_quantizer import qtyping

    return qtyping.OpQuantizationConfig(
        weight_tensor_config=qtyping.TensorQuantizationConfig(
            num_bits=8, symmetric=True, granularity=qtyping.QuantGranularity.CHANNELWISE),
        compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True)


def output_ranges(tflite_path: Path, tensors: list[str], samples: list[dict[str, np.ndarray]]) -> dict[str, dict]:
    """min/max of the named intermediate tensors over `samples` ({tensor: {"min", "max"}}).

    The tensors are made outputs of a copy of the graph, so a plain interpreter keeps just them.
    litert-quantizer's own calibrator keeps every intermediate instead (and copies it), which
    took a 1024 px TinySAM encoder conversion to 15 GB.
    """
    import tempfile

    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils as fb

    fm = fb.read_model(str(tflite_path))
    sg = fm.subgraphs[0]
    index = {tensor_name(t): i for i, t in enumerate(sg.tensors)}
    wanted = [index[n] for n in tensors]
    sg.outputs = list(sg.outputs) + [i for i in wanted if i not in list(sg.outputs)]
    with tempfile.TemporaryDirectory(prefix="litert-ranges-") as tmp:
        path = Path(tmp) / "ranges.tflite"
        fb.write_model(fm, str(path))
        it = Interpreter(model_path=str(path))
        it.allocate_tensors()
        (inp,) = it.get_input_details()
        lo: dict[str, float] = {}
        hi: dict[str, float] = {}
        for sample in samples:
            it.set_tensor(inp["index"], next(iter(sample.values())))
            it.invoke()
            for name, i in zip(tensors, wanted):
                a = it.get_tensor(i)
                lo[name] = min(lo.get(name, np.inf), float(a.min()))
                hi[name] = max(hi.get(name, -np.inf), float(a.max()))
        del it
    return {n: {"min": np.array(lo[n], np.float32), "max": np.array(hi[n], np.float32)} for n in tensors}


def quantize_tflite_w8a8(float_path: Path, out_path: Path, qmodel: torch.nn.Module,
                         samples: list[dict[str, np.ndarray]], prefix: str = "image_encoder",
                         weight_only: list[str] | None = None) -> dict:
    """Write `out_path`: `float_path` with static int8 FC/CONV for our layers, activation scales ours.

    Layers whose input is twin-uniform (post-GELU fc2; only Linear layers have such inputs, see
    `tinysam.quant.qmodel`) get a dynamic-range FULLY_CONNECTED (int8 weights, input rows quantized
    at run time). `samples` calibrate the ranges LiteRT needs beyond our scales (the int8 outputs).
    Layers named in `weight_only` get int8 weights and float compute (`weight_only_config`).
    Returns {"layers": n, "int8_layers": [...], "dynamic_layers": [...], "weight_only_layers": [...],
    "float_layers": [...]}.
    """
    from litert_quantizer import qtyping, quantizer, recipe_manager
    from litert_quantizer.algorithm_manager import AlgorithmName

    from tinysam.quant.qmodel import quant_layers

    layers = quant_layers(qmodel)
    matched = layer_ops(float_path, qmodel, prefix)
    keep = set(weight_only or ())
    w_only = [n for n in matched if n in keep]
    ops = {n: io for n, io in matched.items() if layers[n].a_kind == "uniform" and n not in keep}
    inputs = {n: io[0] for n, io in ops.items()}
    dynamic = [n for n in matched if n not in ops and n not in keep]
    if not inputs:
        raise ValueError(f"no LiteRT op of {float_path.name} matches a calibrated layer under {prefix!r}")
    rm = recipe_manager.RecipeManager()
    for n in dynamic:
        rm.add_dynamic_config(matched[n][2], qtyping.TFLOperationName("FULLY_CONNECTED"), 8)
    for n in inputs:
        for name in QUANT_OPS:
            rm.add_static_config(matched[n][2], qtyping.TFLOperationName(name), 8, 8)
    for n in w_only:
        for name in QUANT_OPS:
            rm.add_quantization_config(matched[n][2], qtyping.TFLOperationName(name),
                                       weight_only_config(), AlgorithmName.MIN_MAX_UNIFORM_QUANT)
    with quiet():
        q = quantizer.Quantizer(str(float_path))
        q.load_quantization_recipe(rm.get_quantization_recipe())
        stats = output_ranges(float_path, sorted({io[1] for io in ops.values()}), samples)
        for n, tensor in inputs.items():
            s = float(layers[n].a_scale)
            stats[tensor] = {"min": np.array(-128.0 * s, np.float32), "max": np.array(127.0 * s, np.float32)}
        q.quantize(stats, enable_progress_report=False).export_model(str(out_path), overwrite=True)
    skipped = [n for n, m in layers.items() if n.startswith(prefix) and m.calibrated and m.kind != "matmul"
               and n not in matched]
    return {"layers": len(inputs), "int8_layers": list(inputs), "dynamic_layers": dynamic,
            "weight_only_layers": w_only, "float_layers": skipped}


@torch.no_grad()
def fp16_weights_config():  # noqa: ANN202 - an litert-quantizer OpQuantizationConfig
    """float16 weights, float compute (an explicit DEQUANTIZE to float32): float layers at half the bytes."""
    from litert_quantizer import qtyping

    return qtyping.OpQuantizationConfig(
        weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=16, dtype=qtyping.TensorDataType.FLOAT),
        compute_precision=qtyping.ComputePrecision.FLOAT, explicit_dequantize=True)


def add_fp16_weights(rm, rx: dict[str, str], names: list[str]) -> None:  # noqa: ANN001 - a RecipeManager
    """Store the weights of the layers `names` (their op scope regexes `rx`, `op_match`) as float16 in `rm`'s recipe."""
    from litert_quantizer import qtyping
    from litert_quantizer.algorithm_manager import AlgorithmName

    for n in names:
        for op in WEIGHT_OPS:
            rm.add_quantization_config(rx[n], qtyping.TFLOperationName(op), fp16_weights_config(),
                                       AlgorithmName.FLOAT_CASTING)


def weight_only_int8(float_path: Path, out_path: Path, qmodel: torch.nn.Module, names: list[str],
                     fp16: list[str] = ()) -> list[str]:
    """Write `out_path`: `float_path` (any number of signatures) with int8 weights and float compute
    for the layers `names` (and float16 weights for the layers `fp16`); returns the names whose ops now
    read int8 weights. `qmodel` holds the weights converted into `float_path` (ops are found by them).

    No calibration is needed (activations stay float), so this works on the two-signature decoder.
    With weights snapped to the recipe's grid (`snapped_copy`), LiteRT's max-based scales are the recipe's.
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fb
    from litert_quantizer import qtyping, quantizer, recipe_manager
    from litert_quantizer.algorithm_manager import AlgorithmName

    from converters.backends.litert.op_match import layer_ops_by_weight, scope_regex

    found = layer_ops_by_weight(float_path, qmodel, [*names, *fp16])
    rx = {n: scope_regex(ops) for n, ops in found.items()}
    w8 = weight_only_config()
    rm = recipe_manager.RecipeManager()
    add_fp16_weights(rm, rx, [n for n in fp16 if n in rx])
    for n in names:
        if n in rx:
            for op in WEIGHT_OPS:
                rm.add_quantization_config(rx[n], qtyping.TFLOperationName(op), w8, AlgorithmName.MIN_MAX_UNIFORM_QUANT)
    with quiet():
        q = quantizer.Quantizer(str(float_path))
        q.load_quantization_recipe(rm.get_quantization_recipe())
        q.quantize(enable_progress_report=False).export_model(str(out_path), overwrite=True)
    fm = fb.read_model(str(out_path))
    codes = {getattr(schema.BuiltinOperator, op) for op in LAYER_OPS}
    int8_scopes: set[str] = set()  # scopes of weight ops that read (dequantized) int8 weights
    for sg in fm.subgraphs:
        producer = {o: op for op in sg.operators for o in op.outputs}
        for op in sg.operators:
            if builtin_code(fm, op) not in codes:
                continue
            w = sg.tensors[op.inputs[1]]
            src = producer.get(op.inputs[1])  # explicit dequantize: DEQUANTIZE(int8 constant) -> weight
            if src is not None:
                w = sg.tensors[src.inputs[0]]
            if w.type == schema.TensorType.INT8:
                int8_scopes.add(";".join(tensor_name(sg.tensors[i]) for i in op.outputs if i != -1) + ";")
    return [n for n in names if n in found and all(o.scope in int8_scopes for o in found[n])]
