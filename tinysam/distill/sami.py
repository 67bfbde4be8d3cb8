"""SAMI: EfficientSAM's SAM-leveraged masked image pretraining of the student image encoder.

The student sees the image with 75% of its 16x16 patches hidden and must reconstruct the teacher's
image embedding everywhere. As in EfficientSAM: the encoder features of the visible patches are the
keys/values (together with the mask tokens) of a cross-attention decoder whose queries are the mask
tokens at the hidden positions; decoder outputs (hidden positions) and encoder features (visible
positions) are merged in patch order and mapped by a linear head to the teacher's feature space;
the loss is the MSE to the teacher embedding over all positions.

Hierarchical students (TinyViT's convolutions) cannot drop tokens, so hidden patches are zeroed in
the normalized input instead (SimMIM style); for a plain ViT this differs only in that hidden
tokens still pass through the encoder, whose outputs at those positions are then discarded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .data import Sample
from .teacher_cache import TeacherCache


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention + MLP block (queries attend to a key/value set)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """q [B, Lq, C], kv [B, Lk, C] -> [B, Lq, C]."""
        kvn = self.norm_kv(kv)
        q = q + self.attn(self.norm_q(q), kvn, kvn, need_weights=False)[0]
        return q + self.mlp(self.norm_mlp(q))


class SamiDecoder(nn.Module):
    """Mask tokens + learned positions, cross-attention decoder and linear projection head."""

    def __init__(self, dim: int, grid: int, depth: int = 1, heads: int = 8, out_dim: int | None = None) -> None:
        super().__init__()
        self.grid = grid
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, grid * grid, dim) * 0.02)
        self.blocks = nn.ModuleList(CrossAttentionBlock(dim, heads) for _ in range(depth))
        self.head = nn.Linear(dim, out_dim or dim)

    def forward(self, features: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """features [B, C, E, E] of the masked image, visible [B, E*E] bool -> [B, C_out, E, E]."""
        b, c, e, _ = features.shape
        tokens = features.flatten(2).transpose(1, 2)  # [B, L, C]
        vis = visible[..., None].to(tokens.dtype)
        queries = self.mask_token.expand(b, e * e, -1) + self.pos_embed
        kv = vis * (tokens + self.pos_embed) + (1 - vis) * queries
        x = queries
        for blk in self.blocks:
            x = blk(x, kv)
        merged = vis * tokens + (1 - vis) * x
        out = self.head(merged)
        return out.transpose(1, 2).reshape(b, -1, e, e)


def random_visible(grid: int, mask_ratio: float, gen: torch.Generator) -> torch.Tensor:
    """[1, grid*grid] bool with exactly round((1 - mask_ratio) * grid^2) visible patches."""
    n = grid * grid
    keep = max(1, int(round(n * (1.0 - mask_ratio))))
    order = torch.randperm(n, generator=gen, device=gen.device)
    vis = torch.zeros(n, dtype=torch.bool, device=gen.device)
    vis[order[:keep]] = True
    return vis[None]


def hide_patches(x: torch.Tensor, visible: torch.Tensor, patch: int) -> torch.Tensor:
    """Zero the hidden patches of a normalized image [B, 3, S, S] (0 = the mean pixel)."""
    b, _, s, _ = x.shape
    g = s // patch
    m = visible.reshape(b, 1, g, g).to(x.dtype)
    m = F.interpolate(m, scale_factor=patch, mode="nearest")
    return x * m


def sami_step(
    student: nn.Module,
    decoder: SamiDecoder,
    sample: Sample,
    cache: TeacherCache,
    gen: torch.Generator,
    mask_ratio: float,
) -> dict[str, torch.Tensor]:
    """Loss parts of one image: ``sami_mse`` (= ``total``)."""
    x = student.preprocess(sample.image)
    visible = random_visible(student.embedding_size, mask_ratio, gen)
    feats = student.encode_image(hide_patches(x, visible, student.config.patch_size))
    recon = decoder(feats, visible)
    target = cache.get(sample.image_id)
    mse = F.mse_loss(recon, target)
    return {"sami_mse": mse, "total": mse}


def sami_batch(
    student: nn.Module,
    decoder: SamiDecoder,
    x: torch.Tensor,
    target: torch.Tensor,
    gens: list[torch.Generator],
    mask_ratio: float,
    autocast,
) -> dict[str, torch.Tensor]:
    """Loss parts of B normalized images ``x`` against teacher embeddings ``target``: ``sami_mse``
    (= ``total``) per image [B]; ``gens[b]`` picks image b's hidden patches."""
    visible = torch.cat([random_visible(student.embedding_size, mask_ratio, g).to(x.device) for g in gens])
    with autocast():
        feats = student.encode_image(hide_patches(x, visible, student.config.patch_size))
        recon = decoder(feats, visible)
    mse = (recon.float() - target.float()).pow(2).mean(dim=(1, 2, 3))
    return {"sami_mse": mse, "total": mse, "image_valid": torch.ones_like(mse, dtype=torch.bool)}
