"""Checkpoint reading, strict loading, error messages and input-size adaptation."""

from __future__ import annotations

import hashlib
import os
from functools import partial

import pytest
import torch
from checkpoints import FORMATS, random_state_dict, write_checkpoint
from segment_anything.modeling import ImageEncoderViT as UpstreamViT
from segment_anything.modeling.image_encoder import get_rel_pos
from torch import nn

from tinysam.build import build_mask_decoder, build_prompt_encoder
from tinysam.checkpoint import (
    CheckpointError,
    NonFiniteWeightsWarning,
    expected_shapes,
    file_sha256,
    load_checkpoint,
    load_state_dict_into,
    read_state_dict,
)
from tinysam.config import get_config
from tinysam.modeling.image_encoder import ImageEncoderViT, relative_index, resize_pos_embed, resize_rel_pos
from tinysam.modeling.sam import Sam

SMALL_VIT = dict(embed_dim=32, depth=2, num_heads=2, window_size=14, global_attn_indexes=(1,), use_rel_pos=True)


def _small_sam(seed: int = 0) -> Sam:
    """A SAM ViT model with the official key pattern but a tiny encoder, at 128."""
    torch.manual_seed(seed)
    cfg = get_config("sam_vit_b", 128)
    enc = ImageEncoderViT(img_size=128, **SMALL_VIT)
    return Sam(cfg, enc, build_prompt_encoder(cfg), build_mask_decoder(cfg)).eval()


@pytest.fixture(scope="module")
def source() -> tuple[Sam, dict]:
    model = _small_sam(0)
    return model, random_state_dict(model, seed=1)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(tmp_path, source, fmt):
    _, sd = source
    path = write_checkpoint(sd, tmp_path / f"ckpt_{fmt}", fmt)
    target = _small_sam(5)
    info = load_checkpoint(target, path)
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == file_sha256(path)
    assert info.resized == []
    for key, value in target.state_dict().items():
        assert torch.equal(value, sd[key]), key


def _expect(path, match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        read_state_dict(path)


def test_file_errors(tmp_path, source):
    _, sd = source
    _expect(tmp_path / "nope.pth", "does not exist")
    (tmp_path / "dir.pth").mkdir()
    _expect(tmp_path / "dir.pth", "is a directory")
    (tmp_path / "empty.pth").write_bytes(b"")
    _expect(tmp_path / "empty.pth", "is empty")
    (tmp_path / "text.pth").write_text("hello, not a checkpoint")
    _expect(tmp_path / "text.pth", "not a PyTorch checkpoint")
    (tmp_path / "weights.ckpt").write_bytes(b"x")
    _expect(tmp_path / "weights.ckpt", "unsupported type")
    for fmt in ("pth", "safetensors"):
        full = write_checkpoint(sd, tmp_path / f"full_{fmt}", fmt)
        cut = tmp_path / f"cut{full.suffix}"
        cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
        _expect(cut, "truncated")


def test_content_errors(tmp_path):
    torch.save(nn.Linear(2, 2), tmp_path / "module.pth")
    _expect(tmp_path / "module.pth", "pickled Python objects")
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    _expect(tmp_path / "list.pth", "does not contain a state_dict")
    torch.save({"epoch": 3}, tmp_path / "meta.pth")
    _expect(tmp_path / "meta.pth", "'epoch' is a int")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path, source):
    path = write_checkpoint(source[1], tmp_path / "locked", "pth")
    path.chmod(0)
    _expect(path, "cannot be read")


def test_wrong_model_names_closest_known_model():
    # shapes only matter, so zero-strided expansions stand in for the real tensors
    fake_b = {k: torch.zeros(()).expand(s) for k, s in expected_shapes("sam_vit_b").items()}
    with pytest.raises(CheckpointError) as err:
        load_state_dict_into(_small_sam(), fake_b, "checkpoint sam_vit_b_01ec64.pth")
    msg = str(err.value)
    assert "look like sam_vit_b" in msg and "\n" not in msg
    assert "unexpected (first image_encoder.blocks.2." in msg
    assert "shape mismatches (first image_encoder.pos_embed" in msg or "shape mismatches (first image_encoder.patch" in msg

    fake_tiny = {k: torch.zeros(()).expand(s) for k, s in expected_shapes("tinysam").items()}
    with pytest.raises(CheckpointError, match="look like tinysam / mobilesam"):
        load_state_dict_into(_small_sam(), fake_tiny)


def test_missing_unexpected_and_shape_errors_name_first_key(source):
    _, sd = source
    bad = dict(sd)
    del bad["mask_decoder.iou_token.weight"]
    bad["extra.weight"] = torch.zeros(1)
    bad["prompt_encoder.no_mask_embed.weight"] = torch.zeros(1, 7)
    with pytest.raises(CheckpointError) as err:
        load_state_dict_into(_small_sam(), bad)
    msg = str(err.value)
    assert "1 missing (first mask_decoder.iou_token.weight)" in msg
    assert "1 unexpected (first extra.weight)" in msg
    assert "prompt_encoder.no_mask_embed.weight: checkpoint [1, 7] vs model [1, 256]" in msg


def test_non_finite_weights_refused_or_warn_with_name(tmp_path, source):
    _, sd = source
    bad = dict(sd)
    bad["mask_decoder.mask_tokens.weight"] = bad["mask_decoder.mask_tokens.weight"].clone()
    bad["mask_decoder.mask_tokens.weight"][0, 0] = float("nan")
    path = write_checkpoint(bad, tmp_path / "nan", "safetensors")
    with pytest.raises(CheckpointError, match="mask_decoder.mask_tokens.weight"):
        load_checkpoint(_small_sam(), path)
    with pytest.warns(NonFiniteWeightsWarning, match="mask_decoder.mask_tokens.weight"):
        load_checkpoint(_small_sam(), path, allow_nonfinite=True)


def test_resize_rel_pos_matches_upstream_get_rel_pos():
    table = torch.randn(127, 16, generator=torch.Generator().manual_seed(0))
    for q in (4, 16, 40, 64):
        expected = get_rel_pos(q, q, table)
        got = resize_rel_pos(table, 2 * q - 1)[relative_index(q, q)]
        assert torch.equal(got, expected)


def test_resize_pos_embed_is_smooth_and_identity_at_same_size():
    ys, xs = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    field = torch.stack([torch.sin(2 * xs), torch.cos(3 * ys)], dim=-1)[None]
    assert torch.equal(resize_pos_embed(field, 64), field)
    small = resize_pos_embed(field, 16)
    assert small.shape == (1, 16, 16, 2)
    centres = (torch.arange(16) + 0.5) / 16 * 64 - 0.5  # source pixel coordinate of each target centre
    ref = torch.stack(
        [torch.sin(2 * centres / 63)[None, :].expand(16, 16), torch.cos(3 * centres / 63)[:, None].expand(16, 16)], -1
    )
    assert (small[0] - ref).abs().max() < 2e-3


def test_1024_checkpoint_loads_into_smaller_model_like_upstream_runtime_resize():
    """A 1024-layout ViT state loaded at 256 equals upstream, which interpolates rel-pos at run time."""
    big = ImageEncoderViT(img_size=1024, **SMALL_VIT)
    sd = random_state_dict(big, seed=3)
    small = ImageEncoderViT(img_size=256, **SMALL_VIT).eval()
    resized = load_state_dict_into(small, sd)
    assert sorted(resized) == sorted(
        ["pos_embed", "blocks.1.attn.rel_pos_h", "blocks.1.attn.rel_pos_w"]
    )
    assert small.pos_embed.shape == (1, 16, 16, 32)
    assert small.blocks[1].attn.rel_pos_h.shape == (31, 16)
    assert torch.equal(small.blocks[0].attn.rel_pos_h, sd["blocks.0.attn.rel_pos_h"])  # windowed: unchanged

    oracle = UpstreamViT(img_size=256, norm_layer=partial(nn.LayerNorm, eps=1e-6), **SMALL_VIT).eval()
    oracle_sd = dict(sd, pos_embed=resize_pos_embed(sd["pos_embed"], 16))
    oracle.blocks[1].attn.rel_pos_h = nn.Parameter(sd["blocks.1.attn.rel_pos_h"])
    oracle.blocks[1].attn.rel_pos_w = nn.Parameter(sd["blocks.1.attn.rel_pos_w"])
    oracle.load_state_dict(oracle_sd, strict=True)
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        diff = (small(x) - oracle(x)).abs().max().item()
    assert diff < 1e-4
