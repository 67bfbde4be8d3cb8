"""The SAM-family model (SAM ViT-B/L/H, MobileSAM, TinySAM): encoder + prompt encoder + decoder.

The surface (`encode_image`, `decode_prompts`, `select_masks`, `postprocess_masks`, `preprocess`)
is shared with EfficientSAM; the pure helpers below are reusable by other model classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .common import PromptableModel
from .prompt_encoder import EMPTY_SLOT_LABEL
from .transformer import EMPTY_SLOT_BIAS


def empty_slot_bias(labels: torch.Tensor) -> torch.Tensor:
    """Additive attention key bias [K, N]: `EMPTY_SLOT_BIAS` where the label is `EMPTY_SLOT_LABEL`, else 0."""
    return (labels == EMPTY_SLOT_LABEL).to(torch.float32) * EMPTY_SLOT_BIAS


def select_masks(
    low_res: torch.Tensor, iou: torch.Tensor, multimask_output: bool, always_multimask: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick tokens 1..3 (multimask or `always_multimask`) or token 0 from all-token outputs."""
    if low_res.shape[1] != iou.shape[1]:
        raise ValueError(f"low_res has {low_res.shape[1]} masks but iou has {iou.shape[1]} scores")
    sl = slice(1, None) if (multimask_output or always_multimask) else slice(0, 1)
    return low_res[:, sl], iou[:, sl]


def postprocess_masks(
    low_res: torch.Tensor,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    image_size: int,
    mode: str = "sam",
) -> torch.Tensor:
    """Low-res logits [K, M, 4E, 4E] -> logits [K, M, H, W] at the original image size.

    "sam": bilinear to image_size, crop the unpadded [:h, :w] region, bilinear to (H, W).
    "bicubic": one bicubic step to (H, W) (EfficientSAM, whose input is stretched, not padded).
    """
    h, w = int(input_size[0]), int(input_size[1])
    out_hw = (int(original_size[0]), int(original_size[1]))
    if mode == "sam":
        x = F.interpolate(low_res, (image_size, image_size), mode="bilinear", align_corners=False)
        x = x[..., :h, :w]
        return F.interpolate(x, out_hw, mode="bilinear", align_corners=False)
    if mode == "bicubic":
        return F.interpolate(low_res, out_hw, mode="bicubic", align_corners=False)
    raise ValueError(f"unknown mask_postprocess {mode!r}; expected 'sam' or 'bicubic'")


def normalize_and_pad(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, image_size: int) -> torch.Tensor:
    """Normalize a 0-255 batch [B, 3, h, w] and zero-pad bottom/right to image_size."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected an image batch [B, 3, h, w], got shape {list(x.shape)}")
    h, w = x.shape[-2:]
    if h > image_size or w > image_size:
        raise ValueError(f"image {h}x{w} is larger than the model input {image_size}; resize it first")
    x = (x - mean) / std
    return F.pad(x, (0, image_size - w, 0, image_size - h))


class Sam(PromptableModel):
    """Image encoder + prompt encoder + mask decoder with the project's model surface."""

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized, padded [B, 3, S, S] -> image embeddings [B, 256, E, E]."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, self.image_size, self.image_size):
            raise ValueError(f"expected [B, 3, {self.image_size}, {self.image_size}], got {list(x.shape)}")
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
        """Decode K prompts of N labelled points -> (low_res [K, 4, 4E, 4E], iou [K, 4]).

        Labels: -2 empty slot (out of attention), -1 padding point, 0 negative, 1 positive,
        2/3 box corners. Coordinates are in the model input frame (before the +0.5 shift).
        With `return_tokens`, a third output holds the two-way transformer's output queries
        [K, 5 + N, C]: IoU token, 4 mask tokens, then the N prompt slots (for distillation).
        """
        if point_coords.dim() != 3 or point_coords.shape[-1] != 2:
            raise ValueError(f"point_coords must be [K, N, 2], got {list(point_coords.shape)}")
        if tuple(point_labels.shape) != tuple(point_coords.shape[:2]):
            raise ValueError(f"point_labels must be [K, N] = {list(point_coords.shape[:2])}, got {list(point_labels.shape)}")
        sparse = self.prompt_encoder.embed_points(point_coords, point_labels)
        dense = self.prompt_encoder.embed_masks(mask_input, has_mask_input)
        image_pe = self.prompt_encoder.get_dense_pe()
        key_bias = empty_slot_bias(point_labels)
        return self.mask_decoder.predict_masks(image_embeddings, image_pe, sparse, dense, key_bias, return_tokens)

    def select_masks(
        self, low_res: torch.Tensor, iou: torch.Tensor, multimask_output: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Multimask -> tokens 1..3, else token 0; TinySAM (`always_multimask`) always 1..3."""
        return select_masks(low_res, iou, multimask_output, self.config.always_multimask)

    def postprocess_masks(
        self, low_res: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int]
    ) -> torch.Tensor:
        """Low-res logits [K, M, 4E, 4E] -> logits [K, M, H, W] (per `config.mask_postprocess`)."""
        return postprocess_masks(low_res, input_size, original_size, self.image_size, self.config.mask_postprocess)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Resized 0-255 image batch [B, 3, h, w] -> normalized and padded [B, 3, S, S]."""
        return normalize_and_pad(x, self.pixel_mean, self.pixel_std, self.image_size)
