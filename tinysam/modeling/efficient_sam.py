"""EfficientSAM (EfficientSAM-Ti / -S) with the same surface as `Sam`.

`build_efficient_sam(config)` builds the official module tree, so `load_state_dict(ckpt["model"])`
works strictly on `efficient_sam_vitt.pt` / `efficient_sam_vits.pt`. Reduced `image_size` values
use the same checkpoint: the encoder's position table is resized to the grid at run time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tinysam.config import ModelConfig
from tinysam.modeling.common import PromptableModel
from tinysam.modeling.efficient_sam_decoder import EfficientSamMaskDecoder, EfficientSamPromptEncoder
from tinysam.modeling.efficient_sam_encoder import EfficientSamImageEncoder

# Fixed decoder hyper-parameters of both official EfficientSAM models.
_DECODER = dict(
    transformer_dim=256,
    num_multimask_outputs=3,
    iou_head_depth=2,  # upstream passes iou_head_depth - 1 = 3 - 1 hidden layers, then `fc`
    iou_head_hidden_dim=256,
    upscaling_layer_dims=(64, 32),
    transformer_depth=2,
    transformer_mlp_dim=2048,
    transformer_heads=8,
)


class EfficientSam(PromptableModel):
    """EfficientSAM: ViT encoder, point prompt encoder, two-way mask decoder (see docs/interfaces.md)."""

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize a stretched 0-255 image [B,3,S,S] (the predictor already resized it to SxS)."""
        s = self.image_size
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (s, s):
            raise ValueError(
                f"EfficientSAM expects an image already resized to [B,3,{s},{s}], got {list(x.shape)}"
            )
        return (x - self.pixel_mean) / self.pixel_std

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized image [B,3,S,S] -> embeddings [B,256,E,E]."""
        return self.image_encoder(x)

    def decode_prompts(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor | None = None,
        has_mask_input: torch.Tensor | None = None,
        return_tokens: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """Prompts -> (all 4 low-res logits [K,4,4E,4E], 4 IoUs [K,4]); with `return_tokens` also the
        two-way transformer's output queries [K, 5 + N, C] (IoU token, 4 mask tokens, N prompt slots).

        Labels: -2 empty slot (excluded from attention), -1 invalid (PE + `invalid_points`),
        0 PE only, 1 positive, 2/3 box corners. `mask_input`/`has_mask_input` are accepted for
        interface compatibility and ignored (EfficientSAM has no mask prompt).
        """
        _check_prompts(
            image_embeddings, point_coords, point_labels, self.config.prompt_embed_dim, self.embedding_size
        )
        sparse = self.prompt_encoder(point_coords, point_labels)
        return self.mask_decoder(
            image_embeddings, self.prompt_encoder.get_dense_pe(), sparse, point_labels, return_tokens=return_tokens
        )

    def select_masks(
        self, low_res: torch.Tensor, iou: torch.Tensor, multimask_output: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Multimask: tokens 1..3; else token 0."""
        if multimask_output:
            return low_res[:, 1:], iou[:, 1:]
        return low_res[:, :1], iou[:, :1]

    def postprocess_masks(
        self, low_res: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int]
    ) -> torch.Tensor:
        """One bicubic step (align_corners False) from 4Ex4E logits to the original (H, W).

        `input_size` is unused: EfficientSAM stretches the whole image to SxS, so nothing is cropped.
        """
        return F.interpolate(low_res, size=tuple(original_size), mode="bicubic", align_corners=False)


def _check_prompts(emb: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor, c: int, e: int) -> None:
    """Raise ValueError on prompt tensors of the wrong shape."""
    if coords.dim() != 3 or coords.shape[-1] != 2:
        raise ValueError(f"point_coords must be [K,N,2], got {list(coords.shape)}")
    if tuple(labels.shape) != tuple(coords.shape[:2]):
        raise ValueError(f"point_labels must be [K,N]={list(coords.shape[:2])}, got {list(labels.shape)}")
    if emb.dim() != 4 or tuple(emb.shape[1:]) != (c, e, e) or emb.shape[0] not in (1, coords.shape[0]):
        raise ValueError(f"image_embeddings must be [1 or K,{c},{e},{e}], got {list(emb.shape)}")


def build_efficient_sam(config: ModelConfig) -> EfficientSam:
    """Build EfficientSAM-Ti/-S for `config` (random weights; load `ckpt["model"]` on top)."""
    if config.family != "efficientsam" or config.encoder != "efficientsam_vit":
        raise ValueError(f"config {config.name!r} is not an EfficientSAM model")
    args = dict(config.encoder_args)
    encoder = EfficientSamImageEncoder(
        img_size=config.image_size,
        patch_size=config.patch_size,
        embed_dim=args["embed_dim"],
        depth=args["depth"],
        num_heads=args["num_heads"],
        mlp_ratio=args.get("mlp_ratio", 4.0),
        neck_dim=config.prompt_embed_dim,
        pretrain_img_size=args.get("pretrain_img_size", 224),
    )
    prompt_encoder = EfficientSamPromptEncoder(
        config.prompt_embed_dim, config.embedding_size, config.image_size
    )
    model = EfficientSam(config, encoder, prompt_encoder, EfficientSamMaskDecoder(**_DECODER))
    return model.eval()
