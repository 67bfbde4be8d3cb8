"""Model descriptions: one explicit config per model name (the registry's data).

Everything that differs between the SAM family members (encoder type and sizes, preprocessing,
prompt rules, decoder behaviour) is written here once; builders, predictors, converters and
the runtime manifest all read it from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# SAM's pixel statistics on a 0-255 scale. EfficientSAM's ImageNet statistics on a 0-1 scale
# (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) are exactly these numbers divided by 255.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build one model and to pre/post-process for it."""

    name: str
    family: str  # "sam" (SAM, MobileSAM, TinySAM) or "efficientsam"
    encoder: str  # "tiny_vit", "vit" or "efficientsam_vit"
    encoder_args: dict = field(default_factory=dict)
    image_size: int = 1024  # native input size of the official checkpoints
    patch_size: int = 16
    prompt_embed_dim: int = 256
    pixel_mean: tuple[float, float, float] = PIXEL_MEAN
    pixel_std: tuple[float, float, float] = PIXEL_STD
    # "longest_side": resize longest side to image_size with PIL bilinear, pad bottom/right (SAM).
    # "stretch": resize to image_size x image_size ignoring aspect (EfficientSAM), torch bilinear.
    resize: str = "longest_side"
    # How low-res logits come back to the original image: "sam" (bilinear to SxS, crop, bilinear
    # to HxW) or "bicubic" (one bicubic step to HxW, EfficientSAM).
    mask_postprocess: str = "sam"
    always_multimask: bool = False  # TinySAM's decoder always returns the 3 multimask outputs
    supports_mask_input: bool = True
    max_points: int | None = None  # EfficientSAM pads/truncates to 6 points
    checkpoint_key: str | None = None  # EfficientSAM stores its state_dict under "model"
    checkpoint_files: tuple[str, ...] = ()  # official file names, for messages

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding grid (64 at 1024)."""
        return self.image_size // self.patch_size

    def to_dict(self) -> dict:
        """Plain-JSON form (for manifests and `cli.py info`)."""
        return asdict(self)


_TINY_VIT_5M = dict(
    embed_dims=[64, 128, 160, 320],
    depths=[2, 2, 6, 2],
    num_heads=[2, 4, 5, 10],
    window_sizes=[7, 7, 14, 7],
    mlp_ratio=4.0,
    mbconv_expand_ratio=4.0,
    local_conv_size=3,
    num_classes=1000,
)


def _vit(embed_dim: int, depth: int, num_heads: int, global_attn_indexes: list[int]) -> dict:
    return dict(
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        global_attn_indexes=global_attn_indexes,
        window_size=14,
        mlp_ratio=4.0,
        out_chans=256,
        qkv_bias=True,
        use_rel_pos=True,
    )


MODEL_CONFIGS: dict[str, ModelConfig] = {
    "tinysam": ModelConfig(
        name="tinysam",
        family="sam",
        encoder="tiny_vit",
        encoder_args=_TINY_VIT_5M,
        always_multimask=True,
        checkpoint_files=("tinysam_42.3.pth", "tinysam.pth"),
    ),
    "mobilesam": ModelConfig(
        name="mobilesam",
        family="sam",
        encoder="tiny_vit",
        encoder_args=_TINY_VIT_5M,
        checkpoint_files=("mobile_sam.pt",),
    ),
    "sam_vit_b": ModelConfig(
        name="sam_vit_b",
        family="sam",
        encoder="vit",
        encoder_args=_vit(768, 12, 12, [2, 5, 8, 11]),
        checkpoint_files=("sam_vit_b_01ec64.pth",),
    ),
    "sam_vit_l": ModelConfig(
        name="sam_vit_l",
        family="sam",
        encoder="vit",
        encoder_args=_vit(1024, 24, 16, [5, 11, 17, 23]),
        checkpoint_files=("sam_vit_l_0b3195.pth",),
    ),
    "sam_vit_h": ModelConfig(
        name="sam_vit_h",
        family="sam",
        encoder="vit",
        encoder_args=_vit(1280, 32, 16, [7, 15, 23, 31]),
        checkpoint_files=("sam_vit_h_4b8939.pth",),
    ),
    "efficientsam_ti": ModelConfig(
        name="efficientsam_ti",
        family="efficientsam",
        encoder="efficientsam_vit",
        encoder_args=dict(embed_dim=192, depth=12, num_heads=3, mlp_ratio=4.0, pretrain_img_size=224),
        resize="stretch",
        mask_postprocess="bicubic",
        supports_mask_input=False,
        max_points=6,
        checkpoint_key="model",
        checkpoint_files=("efficient_sam_vitt.pt",),
    ),
    "efficientsam_s": ModelConfig(
        name="efficientsam_s",
        family="efficientsam",
        encoder="efficientsam_vit",
        encoder_args=dict(embed_dim=384, depth=12, num_heads=6, mlp_ratio=4.0, pretrain_img_size=224),
        resize="stretch",
        mask_postprocess="bicubic",
        supports_mask_input=False,
        max_points=6,
        checkpoint_key="model",
        checkpoint_files=("efficient_sam_vits.pt",),
    ),
}


MAX_IMAGE_SIZE = 2048  # model input side: twice the native 1024 (4x the encoder work); larger is refused


def get_config(name: str, image_size: int | None = None) -> ModelConfig:
    """Config for `name`, optionally at another input size (same architecture and keys), 64..MAX_IMAGE_SIZE."""
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_CONFIGS)}")
    cfg = MODEL_CONFIGS[name]
    if image_size is not None and image_size != cfg.image_size:
        if image_size % cfg.patch_size or not 64 <= image_size <= MAX_IMAGE_SIZE:
            raise ValueError(f"image_size must be a multiple of {cfg.patch_size} between 64 and {MAX_IMAGE_SIZE}, "
                             f"got {image_size}")
        from dataclasses import replace

        cfg = replace(cfg, image_size=image_size)
    return cfg
