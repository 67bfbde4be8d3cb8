"""EfficientSAM prompt encoder, two-way transformer and mask decoder (official state_dict keys).

Differences from SAM that matter for parity (all as in the official code):
- prompts are points only (a box is two corner points); label -1 (invalid) *adds* `invalid_points`
  on top of the positional encoding, label 0 gets the positional encoding only, 1/2/3 add
  `point_embeddings` / `bbox_top_left_embeddings` / `bbox_bottom_right_embeddings`;
- no mask prompt and no dense prompt embedding;
- GELU everywhere; MLPs are `MLPBlock` (`layers.i.0` Linear + GELU, then `fc`);
- in the two-way block, non-first layers add the query PE to the queries themselves before
  self-attention, and the first layer keeps the residual;
- upscaling is ConvT + GroupNorm(1) + GELU, then ConvT + GELU.

Added here for fixed-shape deployment: label -2 marks an empty slot. Its token is excluded as a key
(token self-attention and image->token attention) by an additive -1e4 bias, so trailing -2 slots
leave every output unchanged. The image embedding and the dense PE are broadcast, never tiled.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .prompt_encoder import EMPTY_SLOT_LABEL

# Additive attention bias for empty slots: exp(-1e4) underflows to exactly 0 in float32 and the
# value stays finite in float16.
EMPTY_SLOT_BIAS = -1e4


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of (x, y) in [0,1]^2 (`positional_encoding_gaussian_matrix` [2, F])."""

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_pos_feats))

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """[..., 2] normalized coords -> [..., 2F] (sin, cos); the 2-term product written out."""
        g = self.positional_encoding_gaussian_matrix
        c = 2.0 * coords - 1.0
        proj = c[..., 0:1] * g[0] + c[..., 1:2] * g[1]
        proj = (2.0 * math.pi) * proj
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)

    def dense(self, size: int) -> torch.Tensor:
        """Encoding of pixel centres of a size x size grid, [1, 2F, size, size]."""
        g = self.positional_encoding_gaussian_matrix
        centres = (torch.arange(size, dtype=g.dtype, device=g.device) + 0.5) / size
        ys = centres.view(size, 1).expand(size, size)
        xs = centres.view(1, size).expand(size, size)
        pe = self.encode(torch.stack([xs, ys], dim=-1))
        return pe.permute(2, 0, 1).unsqueeze(0)


class EfficientSamPromptEncoder(nn.Module):
    """Point/box-corner prompts -> sparse embeddings [K, N, C]."""

    def __init__(self, embed_dim: int, image_embedding_size: int, input_image_size: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = image_embedding_size
        self.input_image_size = input_image_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.invalid_points = nn.Embedding(1, embed_dim)
        self.point_embeddings = nn.Embedding(1, embed_dim)
        self.bbox_top_left_embeddings = nn.Embedding(1, embed_dim)
        self.bbox_bottom_right_embeddings = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid, [1, C, E, E]."""
        return self.pe_layer.dense(self.image_embedding_size)

    def forward(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """coords [K,N,2] in the model input frame, labels [K,N] -> [K,N,C]."""
        pts = (coords + 0.5) / float(self.input_image_size)
        emb = self.pe_layer.encode(pts)
        lab = labels.unsqueeze(-1)
        for value, table in (
            (-1, self.invalid_points),
            (1, self.point_embeddings),
            (2, self.bbox_top_left_embeddings),
            (3, self.bbox_bottom_right_embeddings),
        ):
            emb = torch.where(lab == value, emb + table.weight, emb)
        return emb


class MLPBlock(nn.Module):
    """`num_layers` x (Linear + act) to hidden_dim (`layers.i.0`), then Linear `fc` to output_dim."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(d, hidden_dim), nn.GELU()) for d in dims_in)
        self.fc = nn.Linear(hidden_dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the hidden layers, then `fc`."""
        for layer in self.layers:
            x = layer(x)
        return self.fc(x)


class TwoWayAttention(nn.Module):
    """Attention with q/k/v projected to embedding_dim // downsample_rate; batch dims broadcast."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.internal_dim = embedding_dim // downsample_rate
        if self.internal_dim % num_heads:
            raise ValueError(f"num_heads {num_heads} must divide the internal dim {self.internal_dim}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """q [Bq,Nq,C], k/v [Bk,Nk,C] (Bq, Bk in {1, K}); key_bias [K,1,1,Nk] added to the logits."""
        q, k, v = self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        attn = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        if key_bias is not None:
            attn = attn + key_bias
        out = attn.softmax(dim=-1) @ v
        b, h, n, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * d))


class TwoWayAttentionBlock(nn.Module):
    """Token self-attn, token->image, MLP, image->token (EfficientSAM's PE handling)."""

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        downsample_rate: int,
        skip_first_layer_pe: bool,
    ) -> None:
        super().__init__()
        self.self_attn = TwoWayAttention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = TwoWayAttention(embedding_dim, num_heads, downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, embedding_dim, 1)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = TwoWayAttention(embedding_dim, num_heads, downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
        token_bias: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """queries [K,T,C], keys [1 or K,HW,C] -> updated (queries, keys [K,HW,C])."""
        if not self.skip_first_layer_pe:
            queries = queries + query_pe
        queries = self.norm1(queries + self.self_attn(queries, queries, queries, token_bias))
        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(queries + query_pe, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        attn_out = self.cross_attn_image_to_token(k, queries + query_pe, queries, token_bias)
        keys = self.norm4(keys + attn_out)
        return queries, keys


class TwoWayTransformer(nn.Module):
    """`depth` two-way blocks, a final token->image attention and LayerNorm."""

    def __init__(
        self, depth: int, embedding_dim: int, num_heads: int, mlp_dim: int, attention_downsample_rate: int = 2
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embedding_dim, num_heads, mlp_dim, attention_downsample_rate, i == 0)
            for i in range(depth)
        )
        self.final_attn_token_to_image = TwoWayAttention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self,
        image_embedding: torch.Tensor,
        image_pe: torch.Tensor,
        tokens: torch.Tensor,
        token_bias: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image [1 or K,C,E,E], pe [1,C,E,E], tokens [K,T,C], token_bias [K,1,1,T]."""
        keys = image_embedding.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe, token_bias)
        attn_out = self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries + attn_out), keys


class GroupNorm1(nn.Module):
    """GroupNorm with one group (normalize over C,H,W; per-channel affine) via `F.layer_norm`."""

    def __init__(self, num_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B,C,H,W] in and out."""
        x = F.layer_norm(x, tuple(x.shape[1:]), eps=self.eps)
        return x * self.weight.view(-1, 1, 1) + self.bias.view(-1, 1, 1)


class EfficientSamMaskDecoder(nn.Module):
    """Tokens + two-way transformer + upscaling + hypernetworks: all 4 masks and 4 IoUs."""

    def __init__(
        self,
        transformer_dim: int = 256,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 2,
        iou_head_hidden_dim: int = 256,
        upscaling_layer_dims: tuple[int, ...] = (64, 32),
        transformer_depth: int = 2,
        transformer_mlp_dim: int = 2048,
        transformer_heads: int = 8,
    ) -> None:
        super().__init__()
        self.transformer = TwoWayTransformer(
            transformer_depth, transformer_dim, transformer_heads, transformer_mlp_dim
        )
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        layers = []
        dim = transformer_dim
        for i, out in enumerate(upscaling_layer_dims):
            last = i == len(upscaling_layer_dims) - 1
            layers.append(
                nn.Sequential(
                    nn.ConvTranspose2d(dim, out, kernel_size=2, stride=2),
                    nn.Identity() if last else GroupNorm1(out),
                    nn.GELU(),
                )
            )
            dim = out
        self.final_output_upscaling_layers = nn.ModuleList(layers)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLPBlock(transformer_dim, transformer_dim, dim, 2) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLPBlock(
            transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth
        )

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        labels: torch.Tensor,
        return_tokens: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """image [1 or K,C,E,E], pe [1,C,E,E], prompts [K,N,C], labels [K,N] -> ([K,4,4E,4E], [K,4]),
        plus the transformer's output queries [K, 5 + N, C] with `return_tokens`."""
        k = sparse_prompt_embeddings.shape[0]
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(k, -1, -1), sparse_prompt_embeddings], dim=1)
        empty = labels == EMPTY_SLOT_LABEL
        zeros = torch.zeros_like(sparse_prompt_embeddings[..., 0])
        prompt_bias = torch.where(empty, zeros + EMPTY_SLOT_BIAS, zeros)
        token_bias = F.pad(prompt_bias, (1 + self.num_mask_tokens, 0)).view(k, 1, 1, -1)
        hs, src = self.transformer(image_embeddings, image_pe, tokens, token_bias)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]
        _, c, h, w = image_embeddings.shape
        up = src.transpose(1, 2).reshape(k, c, h, w)
        for layer in self.final_output_upscaling_layers:
            up = layer(up)
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        _, uc, uh, uw = up.shape
        masks = (hyper_in @ up.reshape(k, uc, uh * uw)).reshape(k, self.num_mask_tokens, uh, uw)
        iou = self.iou_prediction_head(iou_token_out)
        return (masks, iou, hs) if return_tokens else (masks, iou)
