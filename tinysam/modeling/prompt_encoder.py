"""SAM's prompt encoder (keys as the official checkpoints), written so it exports.

Points and box corners come in one tensor with labels: -2 empty slot, -1 padding point
(`not_a_point_embed`), 0 negative, 1 positive, 2 box top-left, 3 box bottom-right. Embeddings are
selected with `torch.where` and multiplications by `(labels == i)` instead of boolean-index
assignment, and the mask/no-mask choice is blended arithmetically with `has_mask_input`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .common import LayerNorm2d

# Point labels (the deployment package spells the same codes in `mobile_runtime.package_format.LABEL`;
# tinysam imports no runtime code, so they are defined once here for the reference model).
EMPTY_SLOT_LABEL = -2  # slot removed from attention
PAD_LABEL = -1  # SAM's not-a-point padding point


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of (x, y) positions (buffer `positional_encoding_gaussian_matrix`)."""

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        if scale is None or scale <= 0.0:
            scale = 1.0
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats)))

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        """Encode coordinates normalized to [0, 1]: [..., 2] -> [..., 2*num_pos_feats]."""
        coords = 2.0 * coords - 1.0
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = (2.0 * math.pi) * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Dense encoding of an h x w grid of pixel centres -> [C, h, w]."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        y = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / float(h)
        x = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / float(w)
        grid = torch.stack([x[None, :].expand(h, w), y[:, None].expand(h, w)], dim=-1)
        return self._pe_encoding(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Encode pixel coordinates [B, N, 2] (x, y) of an image of size (h, w) -> [B, N, C]."""
        h, w = image_size
        normalized = torch.stack([coords[..., 0] / float(w), coords[..., 1] / float(h)], dim=-1)
        return self._pe_encoding(normalized.to(torch.float32))


class PromptEncoder(nn.Module):
    """Embeds labelled points (sparse) and an optional low-res mask (dense)."""

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.num_point_embeddings = 4  # negative, positive, box top-left, box bottom-right
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(self.num_point_embeddings))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            activation(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the embedding grid, [1, C, E, E]."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Embed labelled points [K, N, 2] (input frame, before +0.5) -> [K, N, C].

        Label -1 gets `not_a_point_embed` alone (no positional part), -2 (empty slot) gets zeros
        (it is kept out of attention by the decoder), 0..3 get the positional encoding plus
        `point_embeddings[label]`; 2/3 equal upstream's box-corner embedding.
        """
        pe = self.pe_layer.forward_with_coords(coords + 0.5, self.input_image_size)
        not_positional = (labels == PAD_LABEL) | (labels == EMPTY_SLOT_LABEL)
        emb = torch.where(not_positional[..., None], torch.zeros_like(pe), pe)
        emb = emb + (labels == PAD_LABEL).to(emb.dtype)[..., None] * self.not_a_point_embed.weight
        for i, table in enumerate(self.point_embeddings):
            emb = emb + (labels == i).to(emb.dtype)[..., None] * table.weight
        return emb

    def embed_masks(
        self,
        mask_input: torch.Tensor | None,
        has_mask_input: torch.Tensor | None,
    ) -> torch.Tensor:
        """Dense embedding [K or 1, C, E, E]: mask_downscaling(mask) blended with `no_mask_embed`.

        `has_mask_input` [K] of 0/1 selects per prompt without python branching; when it is None
        and a mask is given, every prompt uses its mask.
        """
        no_mask = self.no_mask_embed.weight.reshape(1, -1, 1, 1)
        e_h, e_w = self.image_embedding_size
        if mask_input is None:
            return no_mask.expand(1, -1, e_h, e_w)
        mask_emb = self.mask_downscaling(mask_input)
        if has_mask_input is None:
            return mask_emb
        has = has_mask_input.to(mask_emb.dtype).reshape(-1, 1, 1, 1)
        return has * mask_emb + (1.0 - has) * no_mask

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Upstream-compatible call: (sparse [B, N, C], dense [B, C, E, E]).

        Like upstream, points get one padding point (label -1) appended when there is no box.
        """
        parts_c, parts_l = [], []
        if points is not None:
            coords, labels = points
            parts_c.append(coords)
            parts_l.append(labels.to(torch.float32))
            if boxes is None:
                parts_c.append(torch.zeros_like(coords[:, :1]))
                parts_l.append(-torch.ones_like(parts_l[-1][:, :1]))
        if boxes is not None:
            parts_c.append(boxes.reshape(-1, 2, 2))
            parts_l.append(torch.tensor([[2.0, 3.0]], device=boxes.device).expand(boxes.shape[0], 2))
        if parts_c:
            sparse = self.embed_points(torch.cat(parts_c, dim=1), torch.cat(parts_l, dim=1))
        else:
            bs = 1 if masks is None else masks.shape[0]
            sparse = torch.empty((bs, 0, self.embed_dim), device=self.no_mask_embed.weight.device)
        dense = self.embed_masks(masks, None)
        return sparse, dense.expand(sparse.shape[0], -1, -1, -1)
