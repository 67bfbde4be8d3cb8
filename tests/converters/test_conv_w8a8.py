"""W8A8 packages (`--precision w8a8`): the Q-TinySAM recipe's scales in ONNX / CoreML / LiteRT files,
gated against the recipe's fake-quant model; wrong scales fail the gate."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from converters.api import build_package
from converters.options import ConvertOptions
from converters.parity import check_parity, mask_ious
from converters.spec import FAKE_QUANT_THRESHOLDS
from converters.verify import verify_package
from converters.w8a8 import (
    FLOAT,
    INT8_CATEGORIES,
    MATMUL_B,
    MATMUL_BOTH,
    SCALES_FILE,
    W8_ADYNAMIC,
    W8_AFLOAT,
    W8A8,
    float_activation_reason,
    float_layer_reason,
    layer_split,
    package_reference,
    qmodel_from_scales,
    recipe_qmodel,
    scales_json,
)
from tinysam.quant.qmodel import quant_layers

SIZE = 64


@pytest.fixture(scope="module")
def w8a8_setup():
    """Seeded TinySAM at 64 and its recipe fake-quant model (scales searched on 2 bundled photos)."""
    from converters.api import load_model

    model, info = load_model("tinysam", None, SIZE, seed=0)
    return model, info, recipe_qmodel(model, images=2)


@pytest.fixture(scope="module")
def onnx_pkg(w8a8_setup, tmp_path_factory):
    model, info, q = w8a8_setup
    return build_package(model, info, "onnx", ConvertOptions(precision="w8a8", out_dir=tmp_path_factory.mktemp("w8a8_onnx")), qmodel=q)


def test_onnx_w8a8_package_follows_fake_quant(w8a8_setup, onnx_pkg):
    import onnx
    from onnx import numpy_helper

    model, _, q = w8a8_setup
    res = onnx_pkg
    fq, fl = res.parity["fake_quant"]["metrics"], res.parity["metrics"]
    # measured at 64 (seeded, 2 bundled photos): vs fake-quant 0.98, vs float 0.97
    assert res.parity["passed"] and fq["mask_iou_mean"] >= FAKE_QUANT_THRESHOLDS["onnx"]["mask_iou_mean"]
    assert fl["mask_iou_mean"] >= 0.9
    n = sum(p.numel() for p in model.parameters())
    assert res.size_bytes < 0.35 * 4 * n  # int8 weights everywhere (fp32 would be 4 bytes each)
    # the recipe's activation scale is in the graph, on the layer's input
    g = onnx.load(str(res.path / "encoder.onnx")).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    name = "image_encoder.layers.1.blocks.0.attn.qkv"
    node = next(nd for nd in g.node if nd.op_type == "QuantizeLinear" and nd.name.startswith(name.replace(".", "_")))
    assert float(inits[node.input[1]]) == pytest.approx(float(quant_layers(q)[name].a_scale), rel=1e-7)


def test_w8a8_manifest_says_what_is_int8(onnx_pkg, w8a8_setup):
    _, _, q = w8a8_setup
    m = json.loads((onnx_pkg.path / "manifest.json").read_text())
    assert m["precision"] == "w8a8" and SCALES_FILE in m["files"]
    plan = m["precision_plan"]
    assert plan["name"] == "w8a8-qtinysam" and plan["weights"] == "int8" and plan["activations"] == "int8"
    layers = plan["layers"]
    assert len(layers[W8A8]) > 30 and layers[MATMUL_BOTH] and layers[MATMUL_B]
    assert "image_encoder.layers.1.blocks.0.mlp.fc2" in layers[W8_AFLOAT]  # post-GELU: twin-uniform input
    trunk = [n for n in layers[W8_AFLOAT] if float_activation_reason(n)]  # encoder trunk, decoder attention
    assert "image_encoder.layers.1.blocks.0.local_conv.c" in trunk and "image_encoder.neck.0" in trunk
    assert not [n for n in layers[W8A8] if float_activation_reason(n)]
    kept = [r for r in plan["keep_float"] if r.get("scope") == "activations"]
    twin = [r for r in kept if "twin-uniform" in r["reason"]]
    rules = {float_activation_reason(n) for n in trunk}
    assert len(twin) == 2 and len(kept) == 2 + len(rules) == 4
    assert [r["layers"] for r in kept if "trunk" in r["reason"]] == [sum("trunk" in float_activation_reason(n) for n in trunk)]
    assert sum(r["layers"] for r in twin) == len(layers[W8_AFLOAT]) - len(trunk) + len(layers[MATMUL_B])
    att = "mask_decoder.transformer.final_attn_token_to_image"
    assert f"{att}.q_proj" in trunk and f"{att}.matmul_qk" in layers[FLOAT][float_activation_reason(f"{att}.q_proj")]
    assert any("mask" in reason for reason in layers[FLOAT])  # mask-input convs: never calibrated
    i2t = "mask_decoder.transformer.layers.1.cross_attn_image_to_token"  # `FLOAT_LAYERS`: weights float too
    assert f"{i2t}.q_proj" in layers[FLOAT][float_layer_reason(f"{i2t}.q_proj")]
    assert not [n for c in INT8_CATEGORIES for n in layers[c] if n.startswith(i2t)]
    assert plan["layer_counts"][W8A8] == len(layers[W8A8])
    assert "static int8" in plan["applied"]["activations"] and "twin-uniform" in plan["applied"]["activations"]
    assert plan["recipe"]["calibration"]["images"] == 2
    par = m["parity"]
    assert par["fake_quant"]["passed"] and "mask_iou_mean" in par["fake_quant"]["metrics"]
    assert par["fake_quant"]["thresholds"] == FAKE_QUANT_THRESHOLDS["onnx"]


def test_w8a8_scales_file_rebuilds_the_fake_quant_model(w8a8_setup, onnx_pkg):
    model, _, q = w8a8_setup
    q2 = qmodel_from_scales(model, (onnx_pkg.path / SCALES_FILE).read_bytes())
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(q.encode_image(x), q2.encode_image(x))
    res = verify_package(onnx_pkg.path)  # hashes + parity against the rebuilt fake-quant model
    assert res["ok"] and res["parity"]["fake_quant"]["passed"]


def test_w8a8_runtime_session_agrees_with_fake_quant(w8a8_setup, onnx_pkg):
    from calibration_data import bundled_images
    from calibration_data.loaders import load_image
    from mobile_runtime import load_package
    from tinysam.predictor import SamPredictor

    model, _, q = w8a8_setup
    ref = package_reference(q, layer_split(q, "onnx"))
    image = load_image(next(iter(bundled_images())))
    session = load_package(onnx_pkg.path)
    session.set_image(image)
    pred = SamPredictor(ref)
    pred.set_image(image)
    ious = []
    for fx, fy in ((0.5, 0.5), (0.3, 0.6), (0.7, 0.3)):
        pt = np.array([[fx * image.shape[1], fy * image.shape[0]]])
        got, _, _ = session.predict(points=pt, labels=[1])
        want, _, _ = pred.predict(point_coords=pt, point_labels=np.array([1]))
        ious.append(mask_ious(got.astype(np.float32), want.astype(np.float32), 0.5).mean())
    assert np.mean(ious) > 0.9, ious


def test_wrong_scales_fail_the_fake_quant_gate(w8a8_setup, tmp_path):
    model, info, q = w8a8_setup
    bad = copy.deepcopy(q)
    # activation scales cut to a tenth: the export clips what the recipe keeps (halved scales no longer trip the
    # gate: the int8 inputs left are residual branches, `FLOAT_ACTIVATION_LAYERS`, whose clipping costs little)
    for layer in quant_layers(bad).values():
        layer.a_scale.mul_(0.1)
    res = build_package(model, info, "onnx", ConvertOptions(precision="w8a8", out_dir=tmp_path, verify=False), qmodel=bad)
    manifest = json.loads((res.path / "manifest.json").read_text())
    good_ref = package_reference(q, manifest["precision_plan"]["layers"])
    report = check_parity(model, res.path, manifest, fake_quant=good_ref)
    assert not report["passed"] and not report["fake_quant"]["passed"]
    assert any(f.startswith("vs fake-quant: mask_iou_mean") for f in report["failures"])
    # against the recipe's scales; the same files match their own (wrong) scales
    assert report["fake_quant"]["metrics"]["mask_iou_mean"] < 0.85
    own = check_parity(model, res.path, manifest, fake_quant=package_reference(bad, manifest["precision_plan"]["layers"]))
    assert own["fake_quant"]["metrics"]["mask_iou_mean"] > report["fake_quant"]["metrics"]["mask_iou_mean"] + 0.1


def test_scales_json_round_trips_float32_exactly(w8a8_setup):
    _, _, q = w8a8_setup
    doc = json.loads(scales_json(q))
    layers = quant_layers(q)
    assert "image_encoder.layers.1.blocks.0.mlp.fc2" in doc["layers"] and doc["version"] == 2
    again = quant_layers(qmodel_from_scales(w8a8_setup[0], scales_json(q)))
    for name in ("image_encoder.neck.0", "mask_decoder.iou_prediction_head.layers.0"):
        assert torch.equal(again[name].w_scale, layers[name].w_scale) and again[name].a_scale == layers[name].a_scale
    # version 1 files (scales as a list of numbers) still read
    v1 = json.loads(scales_json(q))
    for name, d in v1["layers"].items():
        if "w_scale_f32le" in d:
            d["w_scale"] = [float(str(v)) for v in layers[name].w_scale.reshape(-1).numpy()]
            del d["w_scale_f32le"]
    assert torch.equal(quant_layers(qmodel_from_scales(w8a8_setup[0], json.dumps(v1)))["image_encoder.neck.0"].w_scale,
                       layers["image_encoder.neck.0"].w_scale)
    bad = json.loads(scales_json(q))
    bad["layers"]["image_encoder.neck.0"]["w_scale_f32le"] = "AAAA"  # 3 bytes
    with pytest.raises(ValueError, match="image_encoder.neck.0: w_scale_f32le holds 3 bytes"):
        qmodel_from_scales(w8a8_setup[0], json.dumps(bad))
    import base64

    import numpy as np

    n = layers["image_encoder.neck.0"].w_scale.numel()
    bad["layers"]["image_encoder.neck.0"]["w_scale_f32le"] = base64.b64encode(np.full(n, np.nan, "<f4").tobytes()).decode()
    with pytest.raises(ValueError, match="image_encoder.neck.0: weight scales must be finite and non-negative"):
        qmodel_from_scales(w8a8_setup[0], json.dumps(bad))
    with pytest.raises(ValueError, match="not a tinysam-w8a8-scales file"):
        qmodel_from_scales(w8a8_setup[0], json.dumps({"format": "other"}))


def test_cli_w8a8_takes_no_mixed_budget(tmp_path):
    from click.testing import CliRunner

    from cli import main

    out = CliRunner().invoke(main, ["convert", "--target", "onnx", "--precision", "w8a8", "--max-iou-drop", "0.01",
                                   "--image-size", "64", "--out", str(tmp_path)])
    assert out.exit_code == 1 and "apply only to --precision mixed" in out.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # CoreML conversion of encoder + two decoder functions, emulated parity (~20 s)
def test_coreml_w8a8_package_holds_the_recipe_scales(w8a8_setup, tmp_path):
    import coremltools as ct

    model, info, q = w8a8_setup
    res = build_package(model, info, "coreml", ConvertOptions(precision="w8a8", out_dir=tmp_path), qmodel=q)
    assert res.parity["passed"]
    assert res.parity["fake_quant"]["metrics"]["mask_iou_mean"] >= FAKE_QUANT_THRESHOLDS["coreml"]["mask_iou_mean"]
    spec = ct.models.MLModel(str(res.path / "encoder.mlpackage"), skip_model_load=True).get_spec()
    ops = list(next(iter(spec.mlProgram.functions["main"].block_specializations.values())).operations)
    consts = {op.outputs[0].name: op.attributes["val"] for op in ops if op.type == "const"}

    def scale(op) -> float:  # noqa: ANN001
        arg = op.inputs["scale"].arguments[0]
        value = arg.value if arg.WhichOneof("binding") == "value" else consts[arg.name]
        return value.immediateValue.tensor.floats.values[0]

    kinds = [op.type for op in ops]
    layers = quant_layers(q)
    # one quantize per int8 input: uniform layer inputs and both operands of q @ k^T, the B of softmax @ v
    enc = [n for n in layers if n.startswith("image_encoder.") and layers[n].calibrated]
    # (not the trunk layers of `FLOAT_ACTIVATION_LAYERS`: int8 weights, float inputs)
    want = sum(2 if n.endswith("matmul_qk") else 1 for n in enc
               if layers[n].a_kind == "uniform" and not float_activation_reason(n))
    want += sum(1 for n in enc if n.endswith("matmul_av"))
    assert kinds.count("quantize") == kinds.count("dequantize") == want
    # every conv/linear reads an int8 constexpr weight (identical ones, e.g. all-zero, are stored once)
    made_by = {o.name: op.type for op in ops for o in op.outputs}
    weighted = [op for op in ops if op.type in ("conv", "linear")]
    assert len(weighted) == sum(1 for n in enc if layers[n].kind != "matmul")
    assert {made_by[op.inputs["weight"].arguments[0].name] for op in weighted} == {"constexpr_affine_dequantize"}
    qkv = float(layers["image_encoder.layers.1.blocks.0.attn.qkv"].a_scale)
    assert any(abs(scale(op) - qkv) <= 1e-7 * qkv for op in ops if op.type == "quantize")
    plan = json.loads((res.path / "manifest.json").read_text())["precision_plan"]
    assert "quantize/dequantize" in plan["applied"]["activations"]


@pytest.mark.slow  # two LiteRT float conversions, a LiteRT calibration and parity (~45 s)
def test_tflite_w8a8_package(w8a8_setup, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from mobile_runtime import load_package

    model, info, q = w8a8_setup
    res = build_package(model, info, "tflite", ConvertOptions(precision="w8a8", out_dir=tmp_path), qmodel=q)
    assert res.parity["passed"]
    assert res.parity["fake_quant"]["metrics"]["mask_iou_mean"] >= FAKE_QUANT_THRESHOLDS["tflite"]["mask_iou_mean"]
    details = Interpreter(str(res.path / "encoder.tflite")).get_tensor_details()
    assert sum(d["dtype"] == np.int8 for d in details) > 50
    plan = json.loads((res.path / "manifest.json").read_text())["precision_plan"]
    assert len(plan["layers"][W8A8]) > 30 and not plan["layers"][MATMUL_BOTH]
    fc2 = "image_encoder.layers.1.blocks.0.mlp.fc2"
    assert fc2 in plan["layers"][W8_ADYNAMIC]  # post-GELU input: quantized per row at run time
    # the encoder's trunk layers (`FLOAT_ACTIVATION_LAYERS`): int8 weights, float inputs
    enc_w8 = [n for n in plan["layers"][W8_AFLOAT] if n.startswith("image_encoder.")]
    assert enc_w8 and all(float_activation_reason(n) for n in enc_w8)
    assert plan["dynamic_activations"][0]["layers"] == len(plan["layers"][W8_ADYNAMIC])
    it = Interpreter(str(res.path / "encoder.tflite"))
    kinds = {d["index"]: d["dtype"] for d in it.get_tensor_details()}
    fcs = [o for o in it._get_ops_details() if o["op_name"] == "FULLY_CONNECTED"]  # noqa: SLF001
    # dynamic-range FC: float input and output, int8 weights; one per fc2
    dyn = [o for o in fcs if kinds[o["inputs"][0]] == np.float32 and kinds[o["inputs"][1]] == np.int8]
    assert len(dyn) == len(plan["layers"][W8_ADYNAMIC])
    convs = [o for o in it._get_ops_details() if o["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]  # noqa: SLF001
    float_in = [o for o in convs if kinds[o["inputs"][0]] == np.float32]
    assert 0 < len(float_in) <= len(enc_w8) < len(convs)  # the other convs read static int8 inputs
    assert "mask_decoder.transformer.layers.0.mlp.lin1" in plan["layers"][W8_AFLOAT]  # decoder: int8 weights
    assert (res.path / "decoder.tflite").stat().st_size < 0.4 * 4 * sum(
        p.numel() for n, p in model.named_parameters() if n.startswith("mask_decoder."))
    assert "BATCH_MATMUL" in " ".join(plan["layers"][FLOAT])
    assert any("decoder" in r["reason"] for r in plan["keep_float"] if r.get("scope") == "activations")
    session = load_package(res.path)
    session.set_image(np.full((48, 64, 3), 120, np.uint8))
    masks, _, _ = session.predict(points=[[32, 24]], labels=[1])
    assert masks.shape[-2:] == (48, 64)


def test_cli_convert_w8a8(tmp_path):
    """The user's path end to end (~14 s): scale search on 4 bundled photos, export, both parity gates."""
    from click.testing import CliRunner

    from cli import main

    out = CliRunner().invoke(main, ["convert", "--target", "onnx", "--precision", "w8a8", "--image-size", "64",
                                    "--out", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert "vs fake-quant" in out.output
    m = json.loads((tmp_path / "tinysam-onnx-w8a8" / "manifest.json").read_text())
    assert m["precision_plan"]["recipe"]["calibration"]["images"] == 4 and m["parity"]["fake_quant"]["passed"]
