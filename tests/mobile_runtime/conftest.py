"""Fixtures for the runtime tests: a reduced upstream SAM (the test oracle) exported to ONNX and LiteRT
as deployment packages, so the runtime can be checked against `segment_anything`'s predictor and
automatic mask generator before full-size packages exist.

The reduced model keeps SAM's prompt encoder / mask decoder code at a small width (32) and a small
conv encoder at 128x128. Its decoder export has 2 point slots (a point + pad, or a box) and K in {1, 4}.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

IMG = 128
DIM = 32
SLOTS = 2
VARIANTS = (1, 4)
MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]


class TinyEncoder(nn.Module):
    """Small conv encoder with the attribute upstream SAM reads (`img_size`)."""

    img_size = IMG

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, DIM, 8, stride=8)
        self.mix = nn.Conv2d(DIM, DIM, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(torch.tanh(self.stem(x))) * 3.0


def build_oracle_sam(seed: int = 0):
    """Reduced upstream `segment_anything` Sam (random weights, eval mode)."""
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(seed)
    e = IMG // 16
    sam = Sam(
        image_encoder=TinyEncoder(),
        prompt_encoder=PromptEncoder(embed_dim=DIM, image_embedding_size=(e, e), input_image_size=(IMG, IMG),
                                     mask_in_chans=8),
        mask_decoder=MaskDecoder(num_multimask_outputs=3,
                                 transformer=TwoWayTransformer(depth=2, embedding_dim=DIM, mlp_dim=64, num_heads=2),
                                 transformer_dim=DIM, iou_head_depth=3, iou_head_hidden_dim=32),
        pixel_mean=MEAN, pixel_std=STD,
    ).eval()
    with torch.no_grad():  # sharper logits and IoU spread so filters have something to do
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(300.0)
        sam.mask_decoder.iou_prediction_head.layers[-1].bias.add_(0.6)
    return sam


class DecoderExport(nn.Module):
    """Upstream SAM's prompt embedding written with `torch.where` (exportable), returning all 4 tokens."""

    def __init__(self, sam) -> None:
        super().__init__()
        self.pe = sam.prompt_encoder
        self.dec = sam.mask_decoder

    def forward(self, emb, coords, labels, mask_input, has_mask):
        pe = self.pe
        point = pe.pe_layer.forward_with_coords(coords + 0.5, pe.input_image_size)
        lab = labels[..., None]
        point = torch.where(lab == -1, torch.zeros_like(point), point)
        point = point + (lab == -1).float() * pe.not_a_point_embed.weight
        for i in range(4):
            point = point + (lab == i).float() * pe.point_embeddings[i].weight
        h = has_mask.view(-1, 1, 1, 1)
        dense = h * pe.mask_downscaling(mask_input) + (1 - h) * pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
        return self.dec.predict_masks(emb, pe.get_dense_pe(), point, dense)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sample_decoder_args(k: int):
    e = IMG // 16
    return (torch.randn(1, DIM, e, e), torch.rand(k, SLOTS, 2) * IMG, torch.tensor([[1.0, -1.0]] * k),
            torch.zeros(k, 1, 4 * e, 4 * e), torch.zeros(k))


def write_manifest(out: Path, target: str, encoder_file: str, variants: dict, always_multimask: bool = False) -> None:
    """Manifest (format_version 1) for a reduced package, hashing every file in `out`."""
    e = IMG // 16
    files = {p.relative_to(out).as_posix(): _sha(p) for p in sorted(out.rglob("*")) if p.is_file()
             and p.name != "manifest.json"}
    manifest = {
        "format_version": 1,
        "model": {"name": "oracle_sam", "config": {}, "checkpoint_sha256": None, "trained": False},
        "target": target, "precision": "fp32", "min_os": "",
        "preprocess": {"image_size": IMG, "resize": "longest_side", "interpolation": "pil_bilinear",
                       "pixel_mean": MEAN, "pixel_std": STD, "pad": "bottom_right_zero_after_normalize",
                       "normalization_in_graph": False, "input_layout": "NCHW"},
        "postprocess": {"mask_postprocess": "sam", "mask_threshold": 0.0, "low_res_size": 4 * e},
        "prompts": {"family": "sam", "slots": SLOTS, "always_multimask": always_multimask,
                    "supports_mask_input": True, "max_points": None},
        "models": {
            "encoder": {"file": encoder_file, "signature": None,
                        "inputs": [{"name": "image", "shape": [1, 3, IMG, IMG], "dtype": "float32"}],
                        "outputs": [{"name": "image_embeddings", "shape": [1, DIM, e, e], "dtype": "float32"}]},
            "decoder": {"file": next(iter(variants.values())).get("file"), "variants": variants,
                        "inputs": [{"name": n} for n in ("image_embeddings", "point_coords", "point_labels",
                                                         "mask_input", "has_mask_input")],
                        "outputs": [{"name": "low_res_masks"}, {"name": "iou_predictions"}]},
        },
        "files": files,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


def export_onnx_package(sam, out: Path) -> Path:
    """encoder.onnx + decoder_k{1,4}.onnx + manifest."""
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(sam.image_encoder, (torch.randn(1, 3, IMG, IMG),), str(out / "encoder.onnx"),
                          input_names=["image"], output_names=["image_embeddings"], dynamo=False)
        dec = DecoderExport(sam).eval()
        for k in VARIANTS:
            torch.onnx.export(dec, _sample_decoder_args(k), str(out / f"decoder_k{k}.onnx"),
                              input_names=["image_embeddings", "point_coords", "point_labels", "mask_input",
                                           "has_mask_input"],
                              output_names=["low_res_masks", "iou_predictions"], dynamo=False)
    write_manifest(out, "onnx", "encoder.onnx", {str(k): {"file": f"decoder_k{k}.onnx"} for k in VARIANTS})
    return out


def export_litert_package(sam, out: Path) -> Path:
    """encoder.tflite + decoder.tflite (signatures k1, k4) + manifest."""
    import litert_torch

    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        litert_torch.convert(sam.image_encoder.eval(), (torch.randn(1, 3, IMG, IMG),)).export(str(out / "encoder.tflite"))
        dec = DecoderExport(sam).eval()
        conv = litert_torch
        for k in VARIANTS:
            conv = conv.signature(f"k{k}", dec, _sample_decoder_args(k))
        conv.convert().export(str(out / "decoder.tflite"))
    write_manifest(out, "tflite", "encoder.tflite",
                   {str(k): {"file": "decoder.tflite", "signature": f"k{k}"} for k in VARIANTS})
    return out


@pytest.fixture(scope="session")
def oracle_sam():
    """The reduced upstream SAM."""
    return build_oracle_sam()


@pytest.fixture(scope="session")
def onnx_package(oracle_sam, tmp_path_factory) -> Path:
    """ONNX package of the reduced SAM."""
    return export_onnx_package(oracle_sam, tmp_path_factory.mktemp("pkg") / "oracle-onnx-fp32")


@pytest.fixture(scope="session")
def litert_package(oracle_sam, tmp_path_factory) -> Path:
    """LiteRT package of the reduced SAM."""
    return export_litert_package(oracle_sam, tmp_path_factory.mktemp("pkg") / "oracle-tflite-fp32")


@pytest.fixture(scope="session")
def test_image() -> np.ndarray:
    """A smooth synthetic RGB image with a few shapes (non-square, so padding and cropping matter)."""
    h, w = 96, 150
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 / w, yy * 255 / h, np.full((h, w), 90.0)], axis=-1)
    img[(yy - 40) ** 2 + (xx - 50) ** 2 < 400] = (240, 30, 30)
    img[20:70, 95:135] = (20, 200, 60)
    return img.astype(np.uint8)


class ConverterPackages(dict):
    """(model name, target) -> fp32 package made by `converters` from the seeded 128 px model, built on
    first use and kept for the whole test session."""

    SIZE = 128

    def __init__(self, out: Path) -> None:
        super().__init__()
        self.out = out

    def __missing__(self, key: tuple[str, str]) -> Path:
        from converters.api import build_package, load_model
        from converters.options import ConvertOptions

        model, info = load_model(key[0], None, self.SIZE, seed=0)
        self[key] = build_package(model, info, key[1], ConvertOptions(precision="fp32", out_dir=self.out, verify=False)).path
        return self[key]


@pytest.fixture(scope="session")
def converter_packages(tmp_path_factory) -> ConverterPackages:
    """Converter-made packages of the seeded models at 128 px, each built once per session."""
    return ConverterPackages(tmp_path_factory.mktemp("conv-pkgs"))
