"""The split prompt decoder (`converters.fast_decoder`): a per-image prep graph and a per-prompt graph that
give the reference decoder's masks, in torch, in an ONNX package, and through the runtime session."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from converters.fast_decoder import DecoderPrep, FastPromptDecoder, supports_fast_decoder
from converters.parity import mask_ious
from mobile_runtime import load_package
from mobile_runtime.package_format import FAST_SLOTS, LABEL, N_SLOTS, Manifest, ManifestError
from tinysam import build_sam


def _prompts(k: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """K prompts in N_SLOTS slots: one point + pad, one box, or a positive and a negative point + pad."""
    g = torch.Generator().manual_seed(seed)
    coords = torch.rand(k, N_SLOTS, 2, generator=g) * size
    labels = torch.full((k, N_SLOTS), float(LABEL.EMPTY_SLOT))
    for i in range(k):
        kind = i % 3
        row = [(LABEL.POS, LABEL.PAD), (LABEL.BOX_TL, LABEL.BOX_BR), (LABEL.POS, LABEL.NEG, LABEL.PAD)][kind]
        labels[i, : len(row)] = torch.tensor([float(v) for v in row])
    return coords, labels


@pytest.mark.parametrize("image_size", [128, 256])
def test_split_decoder_is_the_reference_decoder(image_size: int) -> None:
    torch.manual_seed(0)
    model = build_sam("tinysam", image_size=image_size).eval()
    e = model.embedding_size
    emb = torch.randn(1, 256, e, e)
    coords, labels = _prompts(12, image_size)
    with torch.no_grad():
        ref_low, ref_iou = model.decode_prompts(emb, coords, labels)
        prepped = DecoderPrep(model)(emb)
        low, iou = FastPromptDecoder(model)(*prepped, coords[:, :3], labels[:, :3])
    assert torch.abs(low - ref_low).max() < 1e-4 * max(1.0, float(ref_low.abs().max()))
    assert torch.abs(iou - ref_iou).max() < 1e-5
    assert mask_ious(low.numpy(), ref_low.numpy()).mean() > 0.9999


def test_split_decoder_refuses_a_model_without_mask_input() -> None:
    model = build_sam("efficientsam_ti", image_size=128)
    ok, why = supports_fast_decoder(model)
    assert not ok and "mask input" in why
    with pytest.raises(ValueError, match="mask input"):
        FastPromptDecoder(model)


def test_onnx_package_holds_a_parity_checked_split_decoder(tinysam128_onnx_package) -> None:
    manifest = json.loads((tinysam128_onnx_package.path / "manifest.json").read_text())
    models = manifest["models"]
    assert models["decoder_fast"]["slots"] == FAST_SLOTS
    assert sorted(int(k) for k in models["decoder_fast"]["variants"]) == [1, 16, 64]
    metrics = manifest["parity"]["metrics"]
    assert metrics["split_decoder_masks_compared"] > 0
    assert metrics["split_decoder_mask_iou_mean"] >= 0.9999


def test_session_uses_the_split_decoder_only_where_it_gives_the_same_masks(tinysam128_onnx_package) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    session = load_package(tinysam128_onnx_package.path)
    assert session.has_split_decoder and session.fast_batch_sizes == (1, 16, 64)
    timing = json.loads((tinysam128_onnx_package.path / "manifest.json").read_text())["parity"]["decoder_timing"]
    assert session.use_split_decoder == timing["prefer_split"]  # the parity run's measured choice
    assert set(timing["ms_per_prompt"]) == {"full_k1", "full_k16", "split_k1", "split_k16", "split_k64"}
    session.use_split_decoder = True
    session.set_image(image)
    coords, labels = (t.numpy() for t in _prompts(20, session.image_size))
    one = labels[:, 2] == LABEL.EMPTY_SLOT  # prompts that fit in FAST_SLOTS slots
    assert session._fits_split_decoder(labels[one], None) and not session._fits_split_decoder(labels, None)
    low_fast, iou_fast = session.decode(coords[one], labels[one])
    assert session.prep_seconds > 0
    session.use_split_decoder = False
    low_full, iou_full = session.decode(coords[one], labels[one])
    assert mask_ious(low_fast, low_full).mean() > 0.9999
    assert np.abs(iou_fast - iou_full).max() < 1e-5
    session.close()


def test_manifest_with_half_a_split_decoder_is_refused(tinysam128_onnx_package) -> None:
    manifest = json.loads((tinysam128_onnx_package.path / "manifest.json").read_text())
    Manifest.from_dict(manifest)
    del manifest["models"]["decoder_fast"]
    with pytest.raises(ManifestError, match="decoder_prep"):
        Manifest.from_dict(manifest)
