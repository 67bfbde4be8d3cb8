"""Measured mixed plans: built from per-group sensitivity, carried into manifest, plot and exports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from converters.api import build_package
from converters.backends.litert.export import matches, tflite_module_regex
from converters.mixed_plan import PLOT_FILE, measure_mixed_plan
from converters.options import ConvertOptions
from converters.package import check_hashes
from converters.precision import PrecisionPlan, applied_precision, keep_float_name, precision_plan

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def measured(tiny_model):
    from tests.torch_threads import torch_threads

    model, _ = tiny_model
    with torch_threads(1):
        yield measure_mixed_plan(model, None, max_iou_drop=0.01, search_images=1, measure_images=1)


def test_measured_plan_keeps_most_sensitive_groups(measured):
    plan, sens, kept = measured.plan, measured.sensitivity, measured.float_groups
    assert plan["name"] == "mixed-measured-v1" and plan["measured_as"]["mode"] == "weights"
    assert plan["measured"]["budget_met"] and plan["measured"]["iou_drop"] <= 0.01
    assert 0 < len(kept) < len(sens), (len(kept), len(sens))  # seeded: some groups int8, some float
    assert min(sens[g]["drop"] for g in kept) >= max(sens[g]["drop"] for g in sens if g not in kept) - 1e-9
    assert set(plan["sensitivity"]) == set(sens)
    assert measured.plot_png[:4] == b"\x89PNG" and plan["plot"] == PLOT_FILE
    # each kept group's rule selects its layers in ONNX node spelling, and nothing of the other groups
    other = next(g for g in sens if g not in kept)
    for g in kept:
        assert keep_float_name(plan, "/" + sens[g]["layers"][0].replace(".", "/") + "/MatMul")
    assert not keep_float_name(plan, "/" + sens[other]["layers"][0].replace(".", "/") + "/MatMul")


def test_onnx_package_with_measured_plan(tiny_model, measured, tmp_path):
    import onnx

    model, info = tiny_model
    res = build_package(model, info, "onnx", ConvertOptions(precision="mixed", out_dir=tmp_path), plan=measured.plan, extra_files={PLOT_FILE: measured.plot_png})
    assert res.parity["passed"], res.parity["failures"]
    manifest = json.loads((res.path / "manifest.json").read_text())
    pp = manifest["precision_plan"]
    assert pp["name"] == "mixed-measured-v1" and pp["sensitivity"] and pp["applied"]["weights"].startswith("int8")
    assert PLOT_FILE in manifest["files"] and check_hashes(res.path) == []
    graph = onnx.load(str(res.path / "encoder.onnx"), load_external_data=False).graph
    enc_kept = [g for g in measured.float_groups if g.startswith("image_encoder")]
    layers = [n for n in graph.node if n.op_type in ("MatMul", "Conv") and len(n.input) > 1]
    quantized = [n.name for n in layers if n.input[1].endswith("_int8w_float")]  # int8 codes, Cast + Mul
    kept_float = [n.name for n in layers if keep_float_name(measured.plan, n.name)]
    assert quantized and not [n for n in quantized if keep_float_name(measured.plan, n)]
    assert bool(kept_float) == bool(enc_kept)
    assert not [n for n in graph.node if n.op_type in ("DynamicQuantizeLinear", "MatMulInteger")]  # float compute
    dec = onnx.load(str(res.path / "decoder_k1.onnx"), load_external_data=False).graph
    pe = "model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
    assert pe in {i.name for i in dec.initializer}  # the prompt encoder's weights stay float (weight_only.FLOAT_WEIGHT_PREFIX)
    assert not [i.name for i in dec.initializer if i.name.startswith("model.prompt_encoder.") and i.name.endswith("_codes")]
    assert [i.name for i in dec.initializer if i.name.endswith("_int8w_codes")]  # the decoder's layers are int8


def test_tflite_regex_follows_litert_module_names(tiny_model):
    names = [
        "W/tinysam.modeling.tiny_vit.TinyViT_image_encoder/tinysam.modeling.tiny_vit.BasicLayer_2/"
        "tinysam.modeling.tiny_vit.TinyViTBlock_1/tinysam.modeling.tiny_vit.Attention_attn/"
        "torch.nn.modules.linear.Linear_qkv;",
        "W/tinysam.modeling.tiny_vit.TinyViT_image_encoder/tinysam.modeling.tiny_vit.BasicLayer_2/"
        "tinysam.modeling.tiny_vit.TinyViTBlock_10/tinysam.modeling.tiny_vit.Attention_attn/"
        "torch.nn.modules.linear.Linear_qkv;",
        "W/tinysam.modeling.tiny_vit.TinyViT_image_encoder/tinysam.modeling.tiny_vit.BasicLayer_3/"
        "tinysam.modeling.tiny_vit.TinyViTBlock_1/tinysam.modeling.tiny_vit.Mlp_mlp/torch.nn.modules.linear.Linear_fc2",
        "W/tinysam.modeling.tiny_vit.TinyViT_image_encoder/torch.nn.modules.container.Sequential_neck/"
        "torch.nn.modules.conv.Conv2d_2;",
    ]
    from converters.backends.litert.export import module_lists
    from tinysam.quant.qmodel import group_regex

    lists = module_lists(tiny_model[0])
    assert {"image_encoder.layers", "image_encoder.layers.2.blocks"} <= lists and "image_encoder.neck" not in lists

    def rx(p: str) -> str:
        return tflite_module_regex(p, lists)

    assert matches(rx(group_regex("image_encoder.layers.2.blocks.1.attn")), names) == names[:1]
    assert matches(rx(group_regex("image_encoder.layers.3.blocks.1")), names) == names[2:3]
    assert matches(rx(group_regex("image_encoder.neck")), names) == names[3:]
    assert matches(rx(r"image_encoder\.neck\.2"), names) == names[3:]


def test_applied_precision_and_activation_only_rules():
    plan = precision_plan("mixed")
    plan["keep_float"].append({"module": r"x\.fc2(\.|$)", "scope": "activations", "reason": "twin"})
    assert not keep_float_name(plan, "/x/fc2/MatMul")  # activation-only rules leave weights int8
    for target in ("onnx", "tflite", "coreml"):
        applied = applied_precision(PrecisionPlan.from_dict(plan, "mixed"), target)
        assert "searched_scales" in applied and "activation_only_rules" in applied
    fp16 = PrecisionPlan.for_precision("fp16")
    assert applied_precision(fp16, "onnx") == {"weights": "float16", "activations": "float16"}
    # the kind decides, not the plan's fields: a mixed plan measured under W8A8 says "activations": "int8"
    # and is still described as a mixed package
    measured_w8a8 = PrecisionPlan.from_dict(dict(plan, activations="int8"), "mixed")
    assert applied_precision(measured_w8a8, "onnx") == applied_precision(PrecisionPlan.from_dict(plan, "mixed"), "onnx")
    with pytest.raises(ValueError, match="unknown plan rule kind 'dropout'; choose one of: normalization, softmax"):
        PrecisionPlan.from_dict({"keep_float": [{"kind": "dropout"}]}, "mixed")


@pytest.mark.parametrize("args,message", [
    (["--precision", "fp32", "--max-iou-drop", "0.02"], "apply only to --precision mixed"),
    (["--precision", "mixed", "--mixed-plan", "fixed", "--max-size", "5"], "apply only to the measured"),
    (["--precision", "mixed", "--max-iou-drop", "0.02", "--max-size", "5"], "give one mixed-plan budget, not 2"),
    (["--precision", "mixed", "--max-latency-ratio", "0.5", "--max-size", "5"], "give one mixed-plan budget, not 2"),
])
def test_cli_rejects_bad_budgets(tmp_path, args, message):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "convert", "--target", "onnx", "--image-size", "128",
                        "--out", str(out), *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists()


@pytest.mark.slow  # a LiteRT float conversion (40+ s)
def test_tflite_package_with_measured_plan(tiny_model, measured, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    model, info = tiny_model
    res = build_package(model, info, "tflite", ConvertOptions(precision="mixed", out_dir=tmp_path), plan=measured.plan, extra_files={PLOT_FILE: measured.plot_png})
    assert res.parity["passed"], res.parity["failures"]
    details = Interpreter(str(res.path / "encoder.tflite")).get_tensor_details()
    kept = [g for g in measured.float_groups if g.startswith("image_encoder")]
    from tinysam.quant.qmodel import group_regex

    dtypes = {str(d["dtype"].__name__) for d in details}
    assert "int8" in dtypes and "float16" in dtypes  # int8 weights elsewhere, fp16 weights in kept groups
    for g in kept:
        from converters.backends.litert.export import module_lists

        rx = tflite_module_regex(group_regex(g), module_lists(model))
        hits = [d for d in details if matches(rx, [d["name"]])]
        int8 = [d["name"] for d in hits if d["dtype"].__name__ == "int8"]
        assert hits and not int8, (g, int8)  # every layer of a kept group, attention `proj` included


def test_auto_mixed_plan_by_input_size():
    from converters.precision import resolve_mixed_plan

    assert resolve_mixed_plan("auto", 256) == "measured"
    assert resolve_mixed_plan("auto", 1024) == "fixed"
    assert resolve_mixed_plan("auto", 1024, budget_given=True) == "measured"
    assert resolve_mixed_plan("fixed", 256) == "fixed" and resolve_mixed_plan("measured", 1024) == "measured"
    with pytest.raises(ValueError, match="unknown mixed plan"):
        resolve_mixed_plan("best", 256)
