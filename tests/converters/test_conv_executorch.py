"""ExecuTorch (.pte) packages in the real ExecuTorch runtime: parity, verify, segment, everything, the app path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cli import main
from converters.api import build_package, convert, load_model
from converters.options import ConvertOptions
from converters.package import check_hashes
from tinysam.defaults import resolve_default_weights

pytest.importorskip("executorch.runtime")


@pytest.fixture(scope="module")
def trained128():
    """The default TinySAM at its 128 px default size (the shipped weights, else the seeded model)."""
    checkpoint, size, _ = resolve_default_weights("tinysam", None, 128)
    return load_model("tinysam", checkpoint, size or 128)


def _convert(precision: str, out) -> object:  # noqa: ANN001 - the public path of `convert --target executorch`
    (result,) = convert("tinysam", ConvertOptions(targets="executorch", precision=precision, image_size=128,
                                                  out_dir=out))
    return result


@pytest.fixture(scope="module")
def et_fp32(tmp_path_factory):
    return _convert("fp32", tmp_path_factory.mktemp("et32"))


@pytest.fixture(scope="module")
def et_int8(tmp_path_factory):
    return _convert("int8", tmp_path_factory.mktemp("et8"))


def test_fp32_package_passes_parity_and_records_what_the_phone_needs(et_fp32):
    m = et_fp32.parity["metrics"]
    assert et_fp32.parity["passed"] and m["mask_iou_mean"] >= 0.999 and m["embedding_rel_error"] < 1e-4
    manifest = json.loads((et_fp32.path / "manifest.json").read_text())
    assert set(manifest["files"]) == {"README.md", "encoder.pte", "decoder.pte"}
    assert {v["signature"] for v in manifest["models"]["decoder"]["variants"].values()} == {"decoder_k1", "decoder_k16"}
    assert manifest["parity"]["runtime"] == "executorch" and manifest["tools"]["executorch"].startswith("1.5.1")
    needs = manifest["runtime_requirements"]
    assert "1.5.1" in needs["runtime"] and "XNNPACK" in needs["delegate"] and "1.5.1" in manifest["min_os"]
    readme = (et_fp32.path / "README.md").read_text()
    assert "ExecuTorch 1.5.1" in readme and "XNNPACK" in readme and "method `decoder_k16`" in readme
    assert check_hashes(et_fp32.path) == []


def test_int8_package_is_within_the_int8_threshold_and_smaller(et_fp32, et_int8):
    m = et_int8.parity["metrics"]
    assert et_int8.parity["passed"] and m["mask_iou_mean"] >= 0.95
    manifest = json.loads((et_int8.path / "manifest.json").read_text())
    layers = manifest["models"]["encoder"]["int8_layers"]
    assert layers["int8"] > 20 and layers["kept_float"] == []
    assert manifest["models"]["decoder"]["int8_layers"]["int8"] > 10
    assert "XNNPACKQuantizer" in manifest["precision_plan"]["applied"]["weights"]
    assert (et_int8.path / "encoder.pte").stat().st_size < 0.6 * (et_fp32.path / "encoder.pte").stat().st_size


def test_app_path_method_by_name_inputs_by_position(et_fp32, trained128):
    """Exactly as an app: load the program, the method by name, execute with positional tensors."""
    from executorch.runtime import Runtime

    from converters.examples import decoder_sample
    from converters.spec import ExportSpec
    from mobile_runtime.backends import open_model

    model, _ = trained128
    program = Runtime.get().load_program(str(et_fp32.path / "decoder.pte"))
    assert program.method_names == {"decoder_k1", "decoder_k16"}
    args = decoder_sample(ExportSpec(model.config, "executorch", "fp32"), 16)
    low, iou = program.load_method("decoder_k16").execute(list(args))
    with torch.no_grad():
        ref_low, ref_iou = model.decode_prompts(*args)
    assert low.shape == (16, 4, 32, 32) and float((low - ref_low).abs().max()) < 1e-3
    wrapped = open_model(et_fp32.path / "decoder.pte", "executorch", signature="decoder_k16")
    out = wrapped.run({f"input_{i}": a.numpy() for i, a in enumerate(args)})
    np.testing.assert_array_equal(out["output_0"], low.numpy())
    np.testing.assert_array_equal(out["output_1"], iou.numpy())
    with pytest.raises(ValueError, match="has no method 'k16'.*decoder_k1"):
        open_model(et_fp32.path / "decoder.pte", "executorch", signature="k16")


def test_verify_segment_and_everything_on_a_pte_package(et_fp32, tmp_path):
    import mobile_runtime

    runner = CliRunner()
    checkpoint, _, _ = resolve_default_weights("tinysam", None, 128)
    res = runner.invoke(main, ["verify", str(et_fp32.path)] + (["--checkpoint", str(checkpoint)] if checkpoint else []))
    assert res.exit_code == 0, res.output
    rng = np.random.default_rng(0)
    img = rng.integers(40, 90, size=(72, 100, 3), dtype=np.uint8)
    img[20:50, 30:70] = (220, 180, 40)
    Image.fromarray(img).save(tmp_path / "photo.png")
    res = runner.invoke(main, ["segment", "--package", str(et_fp32.path), "--image", str(tmp_path / "photo.png"),
                               "--point", "50,35", "--out", str(tmp_path / "seg")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "seg" / "masks.json").read_text())
    session = mobile_runtime.load_package(et_fp32.path)
    records = mobile_runtime.EverythingGenerator(session, mode="hierarchical", points_per_side=8,
                                                 pred_iou_thresh=0.0, stability_score_thresh=0.0).generate(img)
    assert records


def test_unsupported_precisions_are_refused_in_one_line_before_any_work():
    for precision in ("w8a8", "fp16"):
        with pytest.raises(ValueError, match=f"--precision {precision} is not supported for executorch .*; "
                                             f"executorch supports: fp32, int8, mixed; {precision} is exported by: "
                                             "onnx, tflite, coreml"):
            convert("tinysam", ConvertOptions(targets="executorch", precision=precision, out_dir="/nonexistent"))
    everything = ConvertOptions(targets="all", precision="w8a8")
    assert "executorch" not in everything.target_list() and "onnx" in everything.target_list()
    assert "executorch supports: fp32, int8, mixed" in everything.skipped_targets()["executorch"]
    assert "executorch" in ConvertOptions(targets="all", precision="int8").target_list()


@pytest.mark.slow
def test_mixed_fixed_plan_keeps_its_layers_float(trained128, tmp_path):
    model, info = trained128
    from converters.precision import precision_plan

    res = build_package(model, info, "executorch", ConvertOptions(precision="mixed", out_dir=tmp_path),
                        plan=precision_plan("mixed"))
    assert res.parity["passed"]
    models = json.loads((res.path / "manifest.json").read_text())["models"]
    kept = models["encoder"]["int8_layers"]["kept_float"]
    assert kept and all(n.startswith("image_encoder.patch_embed") for n in kept)  # the plan's stem rule
    assert models["encoder"]["int8_layers"]["int8"] > 20


def test_thread_pool_is_sized_once_and_another_size_is_refused(et_fp32):
    from mobile_runtime.backends import open_model
    from mobile_runtime.backends.executorch_backend import pool_threads

    open_model(et_fp32.path / "encoder.pte", "executorch", num_threads=2)
    assert pool_threads() == 2
    with pytest.raises(ValueError, match="thread pool of this process has 2 threads"):
        open_model(et_fp32.path / "encoder.pte", "executorch", num_threads=3)


def test_plan_keep_float_rules_select_the_float_layers(trained128):
    from converters.backends.executorch.quantize import QUANT_TYPES, scope
    from converters.precision import precision_plan
    from converters.wrappers import EncoderWrapper, decoder_module

    model, _ = trained128
    enc, keep = scope(EncoderWrapper(model), precision_plan("mixed"), QUANT_TYPES)
    assert enc.float and all(n.startswith("image_encoder.patch_embed") for n in enc.float)
    assert keep("model.image_encoder.patch_embed.seq.0.c") and not keep("model.image_encoder.layers.1.blocks.0")
    everything, _ = scope(EncoderWrapper(model), precision_plan("int8"), QUANT_TYPES)
    assert everything.float == [] and len(everything.int8) == len(enc.int8) + len(enc.float)
    assert all(n.startswith("image_encoder.") for n in enc.int8 + enc.float)
    dec, _ = scope(decoder_module(model), {"keep_float": [{"module": r"mask_decoder\.iou_prediction_head"}]},
                   (torch.nn.Linear,), "decoder")
    assert dec.float and all(n.startswith("mask_decoder.iou_prediction_head") for n in dec.float)
    assert not any(n.startswith("image_encoder.") for n in dec.int8)


def test_layer_quantizer_quantizes_exactly_the_named_layers_with_the_given_scale():
    """A BatchNorm-fused conv is static int8 at the given input scale, a Linear dynamic, the other float."""
    from torch import nn

    from converters.backends.executorch.quantize import LayerModes, quantized_program

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8))
            self.fc = nn.Linear(8, 8)
            self.keep = nn.Linear(8, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.keep(self.fc(self.conv(x).mean((2, 3))))

    torch.manual_seed(0)
    net = Net().eval()
    args = (torch.randn(1, 3, 8, 8),)
    ep, done = quantized_program(net, args, LayerModes({"conv.0": 0.05}, frozenset({"fc"})), [args])
    assert done == ["conv.0", "fc"]
    nodes = [n for n in ep.graph.nodes if n.op == "call_function"]
    static_q = [n for n in nodes if n.target == torch.ops.quantized_decomposed.quantize_per_tensor.default]
    assert static_q and static_q[0].args[1] == pytest.approx(0.05) and static_q[0].args[2] == 0  # the given scale
    assert sum(n.target == torch.ops.quantized_decomposed.choose_qparams.tensor for n in nodes) == 1  # fc only
    assert sum(n.target == torch.ops.quantized_decomposed.dequantize_per_channel.default for n in nodes) == 2


def test_gathered_attention_biases_give_the_same_embedding_and_restore_the_model(trained128):
    from converters.backends.executorch.passes import gathered_attention_biases
    from tinysam.modeling.tiny_vit import Attention

    model, _ = trained128
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    attn = next(m for m in model.modules() if isinstance(m, Attention))
    with torch.no_grad():
        ref = model.encode_image(x)
        with gathered_attention_biases(model) as left_out:
            model.eval()  # would rebuild the cache
            assert "bias_cache" not in attn._buffers and "bias_cache" not in vars(attn)  # noqa: SLF001
            gathered = model.encode_image(x)
            n = attn.attention_bias_idxs.shape[0]
            exported = torch.export.export(attn, (torch.randn(2, n, attn.qkv.in_features),))
        assert left_out > 0 and float((gathered - ref).norm() / ref.norm()) < 1e-6
        assert not any(b.shape == attn.bias_cache.shape for b in exported.buffers())  # the cache is not in the program
        assert "bias" not in vars(attn) and "bias_cache" not in vars(attn) and "bias_cache" in attn._buffers  # noqa: SLF001
        assert torch.equal(model.encode_image(x), ref)


def test_layer_norms_by_linear_compute_the_layer_norm_and_restore_the_model(trained128):
    from torch import nn

    from converters.backends.executorch.passes import layer_norms_by_linear

    model, _ = trained128
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    with torch.no_grad():
        ref = model.encode_image(x)
        with layer_norms_by_linear(model) as n:
            assert n == len(norms) > 20
            by_linear = model.encode_image(x)
        assert float((by_linear - ref).norm() / ref.norm()) < 1e-5
        assert all("forward" not in vars(m) and "mean_row" not in m._buffers for m in norms)  # noqa: SLF001
        assert torch.equal(model.encode_image(x), ref)


def test_without_unused_buffers_drops_only_the_buffers_no_op_reads():
    from torch import nn

    from converters.backends.executorch.passes import without_unused_buffers

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("used", torch.ones(3))
            self.register_buffer("unused", torch.zeros(1000), persistent=False)
            self.lin = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x) + self.used

    x = torch.randn(2, 3)
    ep = torch.export.export(M().eval(), (x,))
    want = ep.module()(x)
    assert "unused" in {s.target for s in ep.graph_signature.input_specs}
    ep = without_unused_buffers(ep)
    targets = {s.target for s in ep.graph_signature.input_specs}
    assert "unused" not in targets and "used" in targets and "unused" not in ep.constants
    assert torch.equal(ep.module()(x), want)
