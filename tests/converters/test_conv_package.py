"""Package assembly: spec, precision plan, atomic writes, hashes (no conversion, fast)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from converters.backends.litert.export import tflite_module_regex
from converters.backends.onnx.recipes import onnx_nodes_to_exclude
from converters.package import AtomicPackage, check_hashes, hash_tree
from converters.precision import keep_float_name, precision_plan
from converters.spec import ExportSpec, parse_targets
from tinysam.config import get_config


def test_parse_targets():
    assert parse_targets("all") == ["onnx", "tflite", "coreml", "executorch", "coreai"]
    assert parse_targets("coreml, onnx,onnx") == ["coreml", "onnx"]
    with pytest.raises(ValueError, match="unknown target"):
        parse_targets("tensorrt")


def test_spec_variants_and_signatures():
    cfg = get_config("tinysam", 128)
    tfl = ExportSpec(cfg, "tflite", "int8")
    assert tfl.decoder_variants()[16] == {"file": "decoder.tflite", "signature": "k16"}
    onnx = ExportSpec(cfg, "onnx", "fp32")
    assert onnx.model_files() == ["encoder.onnx", "decoder_k1.onnx", "decoder_k16.onnx", "decoder_prep.onnx",
                                  "decoder_fast_k1.onnx", "decoder_fast_k16.onnx", "decoder_fast_k64.onnx",
                                  "decoder_sam_onnx.onnx"]
    assert "decoder_prep.onnx" not in ExportSpec(cfg, "onnx", "int8").model_files()  # float precisions only
    dec_in = {t.name: t.shape for t in onnx.decoder_inputs(16)}
    assert dec_in["mask_input"] == (16, 1, 32, 32) and dec_in["point_labels"] == (16, 8)
    assert onnx.preprocess_dict()["pixel_mean"] == list(cfg.pixel_mean)
    with pytest.raises(ValueError, match="precision"):
        ExportSpec(cfg, "onnx", "int4")


def test_mixed_plan_selects_stem_and_upscaling_in_every_spelling():
    plan = precision_plan("mixed")
    assert keep_float_name(plan, "/model/image_encoder/patch_embed/seq/seq.0/c/Conv")
    assert keep_float_name(plan, "model_mask_decoder_output_upscaling_0_weight")
    assert not keep_float_name(plan, "/model/image_encoder/layers.1/blocks.0/attn/qkv/MatMul")
    nodes = [("/m/image_encoder/layers.0/Softmax", "Softmax"), ("/m/image_encoder/layers.1/qkv/MatMul", "MatMul")]
    assert onnx_nodes_to_exclude(plan, nodes) == ["/m/image_encoder/layers.0/Softmax"]
    import re

    name = ("converters.wrappers.EncoderWrapper/tinysam.modeling.tiny_vit.TinyViT_image_encoder/"
            "tinysam.modeling.tiny_vit.PatchEmbed_patch_embed/torch.nn.modules.conv.Conv2d_c;")
    assert re.search(tflite_module_regex(r"image_encoder\.patch_embed"), name)
    int8_float = [r["module"] for r in precision_plan("int8")["keep_float"]]
    assert int8_float == [r"mask_decoder\.transformer\.layers\.1\.cross_attn_image_to_token"]  # as in W8A8


def test_decoder_rules_match_the_decoder_files_tensor_names():
    from converters.backends.litert.export import file_module_regex, matches

    # LiteRT decoder tensors carry no `mask_decoder` scope: the wrapper calls into the model's parts
    up = "converters.wrappers.DecoderWrapper/torch.nn.modules.container.Sequential_output_upscaling/" \
         "torch.nn.modules.conv.ConvTranspose2d_0;"
    lin1 = ("converters.wrappers.DecoderWrapper/tinysam.modeling.transformer.TwoWayTransformer_transformer/"
            "tinysam.modeling.transformer.TwoWayAttentionBlock_1/tinysam.modeling.common.MLPBlock_mlp/"
            "torch.nn.modules.linear.Linear_lin1;")
    names = [up, lin1]
    lists = {"mask_decoder.transformer.layers"}
    assert not matches(tflite_module_regex(r"mask_decoder\.output_upscaling", lists), names)
    assert matches(file_module_regex(r"mask_decoder\.output_upscaling", names, lists), names) == [up]
    rule = r"mask_decoder\.transformer\.layers\.1\.mlp\.lin1(\.|$)"
    assert matches(file_module_regex(rule, names, lists), names) == [lin1]
    assert not matches(file_module_regex(rule.replace("layers\\.1", "layers\\.0"), names, lists), names)


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_atomic_commit_and_exception_leave_nothing(tmp_path):
    final = tmp_path / "pkg"
    with pytest.raises(RuntimeError, match="boom"), AtomicPackage(final) as pkg:
        (pkg.dir / "encoder.onnx").write_bytes(b"x" * 100)
        raise RuntimeError("boom")
    assert _leftovers(tmp_path) == []
    with AtomicPackage(final, zip_=True) as pkg:
        (pkg.dir / "a.bin").write_bytes(b"abc")
        (pkg.dir / "manifest.json").write_text(json.dumps({"format_version": 1, "files": hash_tree(pkg.dir)}))
        pkg.commit()
    assert _leftovers(tmp_path) == ["pkg", "pkg.zip"]
    assert check_hashes(final) == []
    (final / "a.bin").write_bytes(b"abd")
    assert check_hashes(final) == ["hash mismatch: a.bin"]


def test_sigterm_midway_leaves_nothing(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal, time
        from pathlib import Path
        from converters.package import AtomicPackage
        with AtomicPackage(Path({str(tmp_path / 'pkg')!r})) as pkg:
            (pkg.dir / "encoder.onnx").write_bytes(b"x" * 1000)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            pkg.commit()
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[2],
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}, timeout=60)
    assert proc.returncode == 143
    assert _leftovers(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_onnx_exclusions_find_decoder_layers_and_leave_the_encoder_alone():

    plan = {"keep_float": [{"module": r"mask_decoder\.transformer\.layers\.1\.cross_attn_image_to_token(\.|$)"},
                           {"module": r"image_encoder\.layers\.1(\.|$)"}]}
    decoder = [("/transformer/layers.1/cross_attn_image_to_token/q_proj/MatMul", "MatMul"),
               ("/transformer/layers.0/cross_attn_image_to_token/q_proj/MatMul", "MatMul"),
               ("/transformer/layers.1/mlp/lin1/MatMul", "MatMul")]
    assert onnx_nodes_to_exclude(plan, decoder) == [decoder[0][0]]  # no `layers.1` of the encoder rule here
    encoder = [("/image_encoder/layers.1/blocks.0/attn/qkv/MatMul", "MatMul"),
               ("/image_encoder/layers.2/blocks.0/attn/qkv/MatMul", "MatMul")]
    assert onnx_nodes_to_exclude(plan, encoder) == [encoder[0][0]]
