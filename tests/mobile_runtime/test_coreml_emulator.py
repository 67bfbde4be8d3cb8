"""CoreML ML-program emulator: real conversions of small modules and reduced SAM parts vs torch."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from coreml_emulator_models import ConvZoo, OpZoo, PromptDecoder, build_sam_parts, convert

from mobile_runtime.backends.coreml_emulator import UnsupportedOpError, load_mlpackage

ct = pytest.importorskip("coremltools")


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    """Max abs difference relative to the reference's max magnitude."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12))


def _decoder_inputs(seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "image_embeddings": torch.randn(1, 32, 8, 8, generator=g),
        "point_coords": torch.rand(2, 3, 2, generator=g) * 128,
        "point_labels": torch.tensor([[1.0, 0.0, -1.0], [2.0, 3.0, 1.0]]),
        "mask_input": torch.randn(2, 1, 32, 32, generator=g),
        "has_mask_input": torch.tensor([0.0, 1.0]),
    }


class _Compressible(torch.nn.Module):
    """Weights big enough for k-means palettization and int8 quantization."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.lin = torch.nn.Linear(32, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x)).mean(dim=(2, 3))
        return self.lin(y)


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Convert every model once; returns name -> (package path, torch module, example inputs)."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("coreml_emu")
    out: dict = {}
    zoo_in = [("x", (1, 4, 16, 16))]
    conv_zoo = ConvZoo().eval()
    ops_zoo = OpZoo().eval()
    ops_ex = (torch.randn(1, 4, 8, 8), torch.tensor([1.0, 4.0, 9.0]))
    enc, pe, md = build_sam_parts()
    dec = PromptDecoder(pe, md).eval()
    dec_in = _decoder_inputs()
    dec_spec = [(k, tuple(v.shape)) for k, v in dec_in.items()]
    comp = _Compressible().eval()
    for prec in ("fp32", "fp16"):
        out[f"conv_{prec}"] = (convert(conv_zoo, zoo_in, root / f"conv_{prec}.mlpackage", prec), conv_zoo,
                               (torch.randn(1, 4, 16, 16),))
        out[f"ops_{prec}"] = (convert(ops_zoo, [("x", (1, 4, 8, 8)), ("idx", (3,))],
                                      root / f"ops_{prec}.mlpackage", prec, example=ops_ex), ops_zoo, ops_ex)
        out[f"enc_{prec}"] = (convert(enc, [("image", (1, 3, 128, 128))], root / f"enc_{prec}.mlpackage", prec),
                              enc, (torch.randn(1, 3, 128, 128),))
        out[f"dec_{prec}"] = (convert(dec, dec_spec, root / f"dec_{prec}.mlpackage", prec,
                                      example=tuple(dec_in.values())), dec, tuple(dec_in.values()))
    for target in ("iOS17", "iOS18"):
        path = convert(comp, [("x", (1, 16, 8, 8))], root / f"comp_{target}.mlpackage", "fp32", target)
        out[f"comp_{target}"] = (path, comp, (torch.randn(1, 16, 8, 8),))
    return out


def _run(pkg: tuple, precision: str | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    path, module, example = pkg
    model = load_mlpackage(path, compute_precision=precision)
    got = model.predict({n: t.numpy() for n, t in zip(model.input_names, example, strict=True)})
    with torch.no_grad():
        ref = module(*example)
    ref = ref if isinstance(ref, tuple) else (ref,)
    return [got[n] for n in model.output_names], [r.numpy() for r in ref]


@pytest.mark.parametrize("name", ["conv", "ops", "enc", "dec"])
def test_fp32_program_matches_torch(packages: dict, name: str) -> None:
    got, ref = _run(packages[f"{name}_fp32"])
    assert len(got) == len(ref)
    for g, r in zip(got, ref, strict=True):
        assert g.dtype == np.float32
        assert rel_err(g, r) <= 1e-4


def test_decoder_low_res_logits_abs_error(packages: dict) -> None:
    (low_res, iou), (ref_low, ref_iou) = _run(packages["dec_fp32"])
    assert low_res.shape == (2, 4, 32, 32)
    assert np.abs(low_res - ref_low).max() < 1e-4
    assert np.abs(iou - ref_iou).max() < 1e-5


def test_prompt_wrapper_matches_upstream_embedding(packages: dict) -> None:
    """The torch.where embedding equals upstream's mask assignment (points) and box corners."""
    _, dec, example = packages["dec_fp32"]
    coords, labels = example[1], example[2]  # prompt 0: labels 1, 0, -1; prompt 1: 2, 3, 1
    with torch.no_grad():
        got = dec.sparse(coords, labels)
        points = dec.pe._embed_points(coords, labels, pad=False)
        box = dec.pe._embed_boxes(coords[1:, :2].reshape(1, 4))
    assert float((got[0] - points[0]).abs().max()) < 1e-5
    assert float((got[1, 2] - points[1, 2]).abs().max()) < 1e-5
    assert float((got[1, :2] - box[0]).abs().max()) < 1e-5


@pytest.mark.parametrize("name", ["conv", "ops", "enc", "dec"])
def test_fp16_program_emulates_fp16(packages: dict, name: str) -> None:
    got16, ref = _run(packages[f"{name}_fp16"])
    got32, _ = _run(packages[f"{name}_fp32"])
    worst_vs32 = 0.0
    for g16, g32, r in zip(got16, got32, ref, strict=True):
        assert g16.dtype == np.float16
        assert rel_err(g16, r) < 2e-2
        worst_vs32 = max(worst_vs32, rel_err(g16, g32))
    assert worst_vs32 > 1e-4  # fp16 rounding is really applied


def test_fp32_program_forced_to_fp16(packages: dict) -> None:
    got, ref = _run(packages["enc_fp32"], precision="fp16")
    assert got[0].dtype == np.float32  # the model's declared output type
    assert 1e-4 < rel_err(got[0], ref[0]) < 2e-2


def test_op_coverage_of_sam_programs(packages: dict) -> None:
    ops = set(load_mlpackage(packages["dec_fp32"][0]).op_types)
    assert {"conv_transpose", "scatter", "tile", "stack", "select", "layer_norm"} <= ops
    assert "conv" in load_mlpackage(packages["enc_fp32"][0]).op_types
    conv_ops = set(load_mlpackage(packages["conv_fp32"][0]).op_types)
    assert {"conv", "conv_transpose", "max_pool", "avg_pool"} <= conv_ops, conv_ops
    zoo_ops = set(load_mlpackage(packages["ops_fp32"][0]).op_types)
    assert {"gather", "cumsum", "topk", "upsample_bilinear", "pad", "erf", "split"} <= zoo_ops, zoo_ops


def _compress(path: Path, kind: str, **kwargs: object) -> tuple[Path, Path]:
    """Compress a saved package; return (compressed, decompressed-by-coremltools) paths."""
    opt = ct.optimize.coreml
    model = ct.models.MLModel(str(path), skip_model_load=True)
    if kind == "int8":
        config = opt.OptimizationConfig(global_config=opt.OpLinearQuantizerConfig(
            mode="linear_symmetric", weight_threshold=512, **kwargs))
        compressed = opt.linear_quantize_weights(model, config)
    elif kind == "palette":
        config = opt.OptimizationConfig(global_config=opt.OpPalettizerConfig(
            mode="kmeans", weight_threshold=512, **kwargs))
        compressed = opt.palettize_weights(model, config)
    else:
        config = opt.OptimizationConfig(global_config=opt.OpMagnitudePrunerConfig(
            target_sparsity=0.5, weight_threshold=512))
        compressed = opt.prune_weights(model, config)
    tag = f"{path.stem}_{kind}_{'_'.join(str(v) for v in kwargs.values())}"
    c_path = path.parent / f"{tag}.mlpackage"
    d_path = path.parent / f"{tag}_dense.mlpackage"
    compressed.save(str(c_path))
    opt.decompress_weights(compressed).save(str(d_path))
    return c_path, d_path


@pytest.mark.parametrize(("target", "kind", "kwargs", "op"), [
    ("iOS17", "int8", {}, "constexpr_affine_dequantize"),
    ("iOS18", "int8", {}, "constexpr_blockwise_shift_scale"),
    ("iOS18", "int8", {"granularity": "per_block", "block_size": 8}, "constexpr_blockwise_shift_scale"),
    ("iOS18", "int8", {"dtype": "int4", "granularity": "per_block", "block_size": 8},
     "constexpr_blockwise_shift_scale"),
    ("iOS17", "palette", {"nbits": 4}, "constexpr_lut_to_dense"),
    ("iOS17", "palette", {"nbits": 6}, "constexpr_lut_to_dense"),
    ("iOS17", "palette", {"nbits": 8}, "constexpr_lut_to_dense"),
    ("iOS18", "palette", {"nbits": 4}, "constexpr_lut_to_dense"),
    ("iOS18", "palette", {"nbits": 4, "granularity": "per_grouped_channel", "group_size": 8},
     "constexpr_lut_to_dense"),
    ("iOS17", "sparse", {}, "constexpr_sparse_to_dense"),
    ("iOS18", "sparse", {}, "constexpr_sparse_to_dense"),
])
def test_compressed_weights_match_decompressed(packages: dict, target: str, kind: str, kwargs: dict,
                                               op: str) -> None:
    path, module, example = packages[f"comp_{target}"]
    c_path, d_path = _compress(path, kind, **kwargs)
    model = load_mlpackage(c_path)
    assert op in model.op_types
    feed = {"x": example[0].numpy()}
    got = next(iter(model.predict(feed).values()))
    dense = next(iter(load_mlpackage(d_path).predict(feed).values()))
    with torch.no_grad():
        ref = module(*example).numpy()
    assert rel_err(got, dense) < 1e-6  # same weights as coremltools' own decompression
    assert rel_err(got, ref) > 1e-6  # compression is really applied
    assert rel_err(got, ref) < {"int8": 0.2, "palette": 0.15, "sparse": 1.0}[kind]


def test_unknown_op_raises(packages: dict, tmp_path: Path) -> None:
    import shutil

    from coremltools.proto import Model_pb2
    src = packages["conv_fp32"][0]
    dst = tmp_path / "bad.mlpackage"
    shutil.copytree(src, dst)
    spec_path = dst / "Data" / "com.apple.CoreML" / "model.mlmodel"
    spec = Model_pb2.Model()
    spec.ParseFromString(spec_path.read_bytes())
    block = spec.mlProgram.functions["main"].block_specializations["CoreML7"]
    target = next(op for op in block.operations if op.type == "relu")
    target.type = "frobnicate"
    spec_path.write_bytes(spec.SerializeToString())
    with pytest.raises(UnsupportedOpError, match="frobnicate") as info:
        load_mlpackage(dst)
    assert info.value.output_name == target.outputs[0].name
    assert target.outputs[0].name in str(info.value)


def test_bad_inputs_raise(packages: dict) -> None:
    model = load_mlpackage(packages["conv_fp32"][0])
    assert model.input_shapes == {"x": (1, 4, 16, 16)}
    with pytest.raises(ValueError, match="missing model inputs"):
        model.predict({})
    with pytest.raises(ValueError, match="shape"):
        model.predict({"x": np.zeros((1, 4, 8, 8), np.float32)})
    with pytest.raises(ValueError, match="no such"):
        load_mlpackage(Path("/nonexistent.mlpackage"))


def _weight_bytes(package: Path) -> int:
    return sum(p.stat().st_size for p in package.rglob("weights/*.bin"))


@pytest.mark.parametrize("quantize", [False, True])
def test_multifunction_package(tmp_path: Path, quantize: bool) -> None:
    """Two batch sizes of one module as functions of one package: each runs as itself, weights once."""
    import coremltools.optimize.coreml as cto

    from mobile_runtime.backends import open_model
    from mobile_runtime.backends.coreml_emulator import CoreMLEmulatorError, function_names

    torch.manual_seed(3)
    module = _Compressible().eval()
    parts = {}
    for batch in (1, 4):
        path = convert(module, [("x", (batch, 16, 8, 8))], tmp_path / f"b{batch}.mlpackage")
        if quantize:  # each function quantized on its own: deterministic, so the int8 consts still dedupe
            cfg = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(
                mode="linear_symmetric", dtype="int8", granularity="per_channel"))
            cto.linear_quantize_weights(ct.models.MLModel(str(path), skip_model_load=True), cfg).save(str(path))
        parts[f"b{batch}"] = path
    desc = ct.utils.MultiFunctionDescriptor()
    for name, path in parts.items():
        desc.add_function(str(path), "main", name)
    desc.default_function_name = "b4"
    multi = tmp_path / "multi.mlpackage"
    ct.utils.save_multifunction(desc, str(multi))

    assert sorted(function_names(multi)) == ["b1", "b4"]
    assert function_names(parts["b1"]) == ["main"]
    one = _weight_bytes(parts["b1"])
    assert _weight_bytes(parts["b4"]) == one
    assert _weight_bytes(multi) < 1.1 * one  # identical weights stored once, not twice

    assert load_mlpackage(multi).function_name == "b4"  # the default function
    for name, batch in (("b1", 1), ("b4", 4)):
        x = torch.randn(batch, 16, 8, 8)
        model = load_mlpackage(multi, function_name=name)
        assert model.input_shapes == {"x": (batch, 16, 8, 8)}
        got = next(iter(model.predict({"x": x.numpy()}).values()))
        single = next(iter(load_mlpackage(parts[name]).predict({"x": x.numpy()}).values()))
        np.testing.assert_array_equal(got, single)  # the function is its source program
        with torch.no_grad():
            assert rel_err(got, module(x).numpy()) < (0.05 if quantize else 1e-5)
        via_backend = open_model(multi, "coreml", signature=name)
        assert via_backend.input_names == ["x"]
        np.testing.assert_array_equal(next(iter(via_backend.run({"x": x.numpy()}).values())), got)
    with pytest.raises(CoreMLEmulatorError, match="has no function 'b2'; available functions: b1, b4"):
        load_mlpackage(multi, function_name="b2")
    with pytest.raises(ValueError, match="available functions: b1, b4"):
        open_model(multi, "coreml", signature="b2")
    with pytest.raises(ValueError, match="available functions: main"):
        open_model(parts["b1"], "coreml", signature="b1")


def test_runtime_does_not_import_coremltools_or_torch() -> None:
    import subprocess
    code = ("import sys; import mobile_runtime.backends.coreml_emulator as m; "
            "print('torch' in sys.modules, 'coremltools' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert res.stdout.split() == ["False", "False"]


@pytest.mark.macos
@pytest.mark.skipif(sys.platform != "darwin", reason="the real CoreML runtime exists only on macOS")
@pytest.mark.parametrize("name", ["enc_fp32", "dec_fp32", "enc_fp16", "dec_fp16"])
def test_emulator_matches_real_coreml(packages: dict, name: str) -> None:
    path, _, example = packages[name]
    model = load_mlpackage(path)
    feed = {n: t.numpy() for n, t in zip(model.input_names, example, strict=True)}
    real = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY).predict(feed)
    got = model.predict(feed)
    tol = 1e-4 if name.endswith("fp32") else 2e-2
    for key in model.output_names:
        assert rel_err(got[key], real[key]) < tol


def test_builder_program_ops_and_nested_blocks(tmp_path: Path) -> None:
    """Ops that traced torch folds away (fill, range_1d, ...) and a ``cond`` with nested blocks."""
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 2, 4, 6))], opset_version=ct.target.iOS17)
    def prog(x):  # noqa: ANN001, ANN202
        total = mb.reduce_sum(x=x)
        branch = mb.cond(pred=mb.greater(x=total, y=0.0), _true_fn=lambda: mb.mul(x=x, y=2.0),
                         _false_fn=lambda: mb.sub(x=x, y=1.0))
        width = mb.gather(x=mb.shape(x=x), indices=3)
        ramp = mb.range_1d(start=0, end=width, step=2)
        filled = mb.fill(shape=mb.shape(x=x), value=2.5)
        sliced = mb.slice_by_size(x=x, begin=[0, 1, 1, 2], size=[1, 1, -1, 3])
        resized = mb.resize_bilinear(x=x, target_size_height=7, target_size_width=9,
                                     sampling_mode="UNALIGN_CORNERS")
        shuffled = mb.pixel_shuffle(x=mb.pixel_unshuffle(x=x, downscale_factor=np.uint32(2)),
                                 upscale_factor=2)
        perm = np.broadcast_to(np.array([5, 0, 1, 2, 3, 4], np.int32), (1, 2, 4, 6)).copy()
        picked = mb.gather_along_axis(x=x, indices=perm, axis=3)
        return branch, ramp, filled, sliced, resized, shuffled, picked

    path = tmp_path / "builder.mlpackage"
    ct.convert(prog, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
               compute_precision=ct.precision.FLOAT32).save(str(path))
    model = load_mlpackage(path)
    assert "cond" in model.op_types
    for sign in (1.0, -1.0):
        x = (np.random.default_rng(0).random((1, 2, 4, 6)) * sign).astype(np.float32)
        out = [model.predict({"x": x})[n] for n in model.output_names]
        want_branch = x * 2.0 if sign > 0 else x - 1.0
        want_resized = torch.nn.functional.interpolate(torch.from_numpy(x), size=(7, 9), mode="bilinear",
                                                       align_corners=False).numpy()
        np.testing.assert_allclose(out[0], want_branch, rtol=1e-6)
        np.testing.assert_array_equal(out[1], [0, 2, 4])
        np.testing.assert_array_equal(out[2], np.full(x.shape, 2.5, np.float32))
        np.testing.assert_array_equal(out[3], x[:, 1:2, 1:, 2:5])
        np.testing.assert_allclose(out[4], want_resized, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(out[5], x)
        np.testing.assert_array_equal(out[6], x[..., [5, 0, 1, 2, 3, 4]])


def test_predict_drops_each_intermediate_after_its_last_reader(tmp_path: Path) -> None:
    """Intermediates leave the run's environment after their last reader (a nested block counts);
    outputs stay. Without this a 1024 px SAM ViT-B encoder keeps every activation (over 20 GB)."""
    from coremltools.converters.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(2, 3))], opset_version=ct.target.iOS17)
    def prog(x):  # noqa: ANN001, ANN202
        a = mb.relu(x=x, name="a")  # read again only inside the cond's true branch
        b = mb.mul(x=a, y=2.0, name="b")
        c = mb.add(x=b, y=1.0, name="c")  # an output, and read by the cond
        d = mb.cond(pred=mb.greater(x=mb.reduce_sum(x=c), y=0.0, name="p"),
                    _true_fn=lambda: mb.mul(x=a, y=c, name="t"), _false_fn=lambda: mb.sub(x=a, y=1.0, name="f"),
                    name="d")
        return d, c

    path = tmp_path / "release.mlpackage"
    ct.convert(prog, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
               compute_precision=ct.precision.FLOAT32).save(str(path))
    model = load_mlpackage(path)
    live: dict[str, set[str]] = {}  # op output -> variables of the run when the op starts
    real = model._run_op

    def spy(op, env):  # noqa: ANN001, ANN202
        live[op.outputs[0][0]] = set(env) - set(model._consts)
        return real(op, env)

    model._run_op = spy
    x = np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.0]], np.float32)
    out = model.predict({"x": x})
    a = np.maximum(x, 0)
    np.testing.assert_allclose(out["c"], 2 * a + 1)
    np.testing.assert_allclose(out["d"], a * (2 * a + 1))
    assert "b" in live["c"] and "b" not in live["d"]  # b's last reader is c
    assert "a" in live["d"] and "x" not in live["b"]  # a is kept for the cond's branch; x dropped after relu
    assert "c" in live["d"]
    drops = {n for names in model._release for n in names}
    assert not drops & set(model.output_names)
