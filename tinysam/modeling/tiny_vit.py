"""TinyViT-5M image encoder of TinySAM and MobileSAM (module tree and state_dict keys as upstream).

Structure: a two-conv stem (stride 4), one stage of MBConv blocks, three stages of windowed-attention
blocks with LeViT-style learned relative biases, PatchMerging between stages (stride 1 into the
320/448/576-channel last stage) and a SAM neck to 256 channels. The classifier `norm_head`/`head`
is never run but kept so official checkpoints load strictly.

Written for export: static Python shapes, windows always padded to a multiple of the window size
(so reduced image sizes work), LayerNorm2d as permute + `F.layer_norm` + permute, and the relative
bias table gathered once through a precomputed index buffer and cached for eval mode.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from tinysam.modeling.common import LayerNorm2d

# Out dims into which PatchMerging keeps the resolution (stride 1), as in the TinySAM/MobileSAM code.
_STRIDE1_OUT_DIMS = (320, 448, 576)


class Conv2dBN(nn.Sequential):
    """Bias-free Conv2d (`c`) followed by BatchNorm2d (`bn`)."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bn_weight_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.add_module(
            "c", nn.Conv2d(in_chans, out_chans, kernel_size, stride, padding, groups=groups, bias=False)
        )
        bn = nn.BatchNorm2d(out_chans)
        nn.init.constant_(bn.weight, bn_weight_init)
        nn.init.zeros_(bn.bias)
        self.add_module("bn", bn)


class PatchEmbed(nn.Module):
    """Stem: two stride-2 3x3 Conv-BN with a GELU between them (keys `seq.0`, `seq.2`)."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            Conv2dBN(in_chans, embed_dim // 2, 3, 2, 1),
            nn.GELU(),
            Conv2dBN(embed_dim // 2, embed_dim, 3, 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B,3,S,S] -> [B,C,S/4,S/4]."""
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project, residual add, then GELU."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = Conv2dBN(dim, hidden, 1)
        self.act1 = nn.GELU()
        self.conv2 = Conv2dBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2dBN(hidden, dim, 1, bn_weight_init=0.0)
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW in, NCHW out (same shape)."""
        y = self.act1(self.conv1(x))
        y = self.act2(self.conv2(y))
        y = self.conv3(y)
        return self.act3(y + x)


def merge_stride(out_dim: int) -> int:
    """Stride of PatchMerging's depthwise conv: 1 into a 320/448/576-channel stage, else 2."""
    return 1 if out_dim in _STRIDE1_OUT_DIMS else 2


class PatchMerging(nn.Module):
    """1x1 Conv-BN, GELU, 3x3 depthwise Conv-BN (stride 1 or 2), GELU, 1x1 Conv-BN; returns tokens."""

    def __init__(self, input_resolution: tuple[int, int], dim: int, out_dim: int) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.act = nn.GELU()
        self.conv1 = Conv2dBN(dim, out_dim, 1)
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, merge_stride(out_dim), 1, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW or tokens [B,H*W,C] in; tokens [B,H'*W',C'] out."""
        if x.dim() == 3:
            h, w = self.input_resolution
            x = x.view(x.shape[0], h, w, x.shape[2]).permute(0, 3, 1, 2)
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = self.conv3(x)
        return x.flatten(2).transpose(1, 2)


class ConvLayer(nn.Module):
    """Stage 0: MBConv blocks then an optional PatchMerging."""

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        depth: int,
        expand_ratio: float,
        out_dim: int | None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = PatchMerging(input_resolution, dim, out_dim) if out_dim is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """NCHW in; tokens out if there is a downsample, else NCHW."""
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x) if self.downsample is not None else x


class Mlp(nn.Module):
    """Pre-norm MLP: LayerNorm, fc1, GELU, fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens in, tokens out."""
        return self.fc2(self.act(self.fc1(self.norm(x))))


def attention_bias_index(window: tuple[int, int]) -> tuple[torch.Tensor, int]:
    """Index [N,N] into the bias table for each query/key pair of a window, and the table size.

    Each distinct offset (|dy|, |dx|) gets a column in order of first appearance while walking the
    query points and then the key points in row-major order (the checkpoint's column order).
    """
    points = list(itertools.product(range(window[0]), range(window[1])))
    offsets: dict[tuple[int, int], int] = {}
    idxs = []
    for p1 in points:
        for p2 in points:
            off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            idxs.append(offsets.setdefault(off, len(offsets)))
    n = len(points)
    return torch.tensor(idxs, dtype=torch.long).view(n, n), len(offsets)


def _refresh_after_load(module: nn.Module, incompatible_keys: object) -> None:
    """load_state_dict post-hook: the cached bias must follow newly loaded `attention_biases`."""
    module.refresh_bias_cache()


class Attention(nn.Module):
    """Multi-head self-attention over one window with a learned relative-position bias per head.

    `qkv` output is laid out per head as [q, k, v] (view (B, N, heads, 3*head_dim), then split),
    exactly as the checkpoints expect. In eval mode the gathered bias [heads, N, N] comes from the
    non-persistent buffer `bias_cache`, rebuilt on `train()/eval()`, after `load_state_dict` and by
    `refresh_bias_cache()` (call it after editing `attention_biases` in place by hand).
    """

    def __init__(self, dim: int, key_dim: int, num_heads: int, resolution: tuple[int, int]) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.scale = key_dim**-0.5
        self.dh = key_dim * num_heads  # attn_ratio = 1
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * self.dh)
        self.proj = nn.Linear(self.dh, dim)
        idx, num_offsets = attention_bias_index(resolution)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, num_offsets))
        self.register_buffer("attention_bias_idxs", idx, persistent=False)
        self.register_buffer(
            "bias_cache", torch.zeros(num_heads, idx.shape[0], idx.shape[1]), persistent=False
        )
        self.refresh_bias_cache()
        self.register_load_state_dict_post_hook(_refresh_after_load)

    def gathered_bias(self) -> torch.Tensor:
        """Bias table gathered to [heads, N, N] (differentiable)."""
        return self.attention_biases[:, self.attention_bias_idxs]

    def bias(self) -> torch.Tensor:
        """The [heads, N, N] bias this forward adds: gathered when training, else the cache."""
        return self.gathered_bias() if self.training else self.bias_cache

    @torch.no_grad()
    def refresh_bias_cache(self) -> None:
        """Recompute the eval-mode bias cache from the current `attention_biases`."""
        self.bias_cache = self.gathered_bias().detach().clone()

    def train(self, mode: bool = True) -> Attention:
        """Switch mode and rebuild the bias cache."""
        super().train(mode)
        self.refresh_bias_cache()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Windows [B', N, C] in, [B', N, C] out."""
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3 * self.key_dim)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.key_dim], dim=3)
        q, k, v = q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.bias()
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, self.dh)
        return self.proj(out)


class TinyViTBlock(nn.Module):
    """x + WindowAttn(x); 3x3 depthwise `local_conv`; x + MLP(x). Windows are zero-padded."""

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        local_conv_size: int,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.input_resolution = input_resolution
        self.window_size = window_size
        self.attn = Attention(dim, dim // num_heads, num_heads, (window_size, window_size))
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2dBN(dim, dim, local_conv_size, 1, local_conv_size // 2, groups=dim)

    def window_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Attention within non-overlapping windows of tokens [B, H*W, C] (pads bottom/right)."""
        h, w = self.input_resolution
        ws = self.window_size
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        pad_b, pad_r = (-h) % ws, (-w) % ws
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        ph, pw = h + pad_b, w + pad_r
        nh, nw = ph // ws, pw // ws
        x = x.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
        x = self.attn(x)
        x = x.view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, ph, pw, c)
        if pad_b or pad_r:
            x = x[:, :h, :w]
        return x.reshape(b, h * w, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens [B, H*W, C] in and out."""
        h, w = self.input_resolution
        b, n, c = x.shape
        x = x + self.window_attention(x)
        x = self.local_conv(x.transpose(1, 2).reshape(b, c, h, w))
        x = x.view(b, c, n).transpose(1, 2)
        return x + self.mlp(x)


class BasicLayer(nn.Module):
    """Stages 1-3: TinyViT blocks then an optional PatchMerging."""

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        local_conv_size: int,
        out_dim: int | None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, input_resolution, num_heads, window_size, mlp_ratio, local_conv_size)
            for _ in range(depth)
        )
        self.downsample = PatchMerging(input_resolution, dim, out_dim) if out_dim is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens in, tokens out."""
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x) if self.downsample is not None else x


def stage_resolutions(img_size: int, embed_dims: list[int]) -> list[int]:
    """Grid side of each stage: img/4 after the stem, then each PatchMerging's stride-1/2 conv."""
    res = [(img_size + 3) // 4]
    for out_dim in embed_dims[1:]:
        s = merge_stride(out_dim)
        res.append((res[-1] - 1) // s + 1)
    return res


class TinyViT(nn.Module):
    """TinyViT backbone with SAM neck: [B,3,S,S] -> [B,256,S/16,S/16] (5M config for TinySAM)."""

    def __init__(
        self,
        img_size: int = 1024,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dims: tuple[int, ...] | list[int] = (64, 128, 160, 320),
        depths: tuple[int, ...] | list[int] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] | list[int] = (2, 4, 5, 10),
        window_sizes: tuple[int, ...] | list[int] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        out_chans: int = 256,
    ) -> None:
        super().__init__()
        if img_size <= 0 or img_size % 16:
            raise ValueError(f"img_size must be a positive multiple of 16, got {img_size}")
        lengths = {len(embed_dims), len(depths), len(num_heads), len(window_sizes)}
        if len(lengths) != 1 or len(embed_dims) < 2:
            raise ValueError(
                "embed_dims, depths, num_heads and window_sizes must have the same length (>= 2)"
            )
        self.img_size = img_size
        embed_dims = list(embed_dims)
        res = stage_resolutions(img_size, embed_dims)
        self.stage_resolutions = res
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        self.layers = nn.ModuleList()
        n = len(embed_dims)
        for i in range(n):
            out_dim = embed_dims[i + 1] if i < n - 1 else None
            if i == 0:
                layer: nn.Module = ConvLayer(
                    embed_dims[0], (res[0], res[0]), depths[0], mbconv_expand_ratio, out_dim
                )
            else:
                layer = BasicLayer(
                    embed_dims[i],
                    (res[i], res[i]),
                    depths[i],
                    num_heads[i],
                    window_sizes[i],
                    mlp_ratio,
                    local_conv_size,
                    out_dim,
                )
            self.layers.append(layer)
        self.norm_head = nn.LayerNorm(embed_dims[-1])  # unused, kept for the checkpoint
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()  # unused
        self.apply(_init_linear)
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    @property
    def embedding_size(self) -> int:
        """Side of the output grid."""
        return self.stage_resolutions[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized, padded image [B,3,S,S] -> embedding [B,out_chans,E,E]."""
        if x.dim() != 4 or tuple(x.shape[-2:]) != (self.img_size, self.img_size):
            raise ValueError(f"expected input [B,C,{self.img_size},{self.img_size}], got {list(x.shape)}")
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        e = self.stage_resolutions[-1]
        b, _, c = x.shape
        x = x.view(b, e, e, c).permute(0, 3, 1, 2)
        return self.neck(x)


def _init_linear(m: nn.Module) -> None:
    """Upstream init: truncated-normal Linear weights (std 0.02), zero biases; LayerNorm 1/0."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
