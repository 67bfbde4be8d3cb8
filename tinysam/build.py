"""Building models by name: `build_sam(name, checkpoint=None, image_size=None, seed=None)`."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .config import ModelConfig, get_config
from .modeling.image_encoder import ImageEncoderViT
from .modeling.mask_decoder import MaskDecoder
from .modeling.prompt_encoder import PromptEncoder
from .modeling.sam import Sam
from .modeling.transformer import TwoWayTransformer

MASK_IN_CHANS = 16
DECODER_DEPTH = 2
DECODER_MLP_DIM = 2048
DECODER_HEADS = 8


def build_image_encoder(config: ModelConfig) -> nn.Module:
    """The SAM-family image encoder named by `config.encoder` ("vit" or "tiny_vit")."""
    args = dict(config.encoder_args)
    if config.encoder == "vit":
        return ImageEncoderViT(
            img_size=config.image_size,
            patch_size=config.patch_size,
            embed_dim=args["embed_dim"],
            depth=args["depth"],
            num_heads=args["num_heads"],
            mlp_ratio=args.get("mlp_ratio", 4.0),
            out_chans=args.get("out_chans", config.prompt_embed_dim),
            qkv_bias=args.get("qkv_bias", True),
            use_rel_pos=args.get("use_rel_pos", True),
            window_size=args.get("window_size", 14),
            global_attn_indexes=tuple(args.get("global_attn_indexes", ())),
        )
    if config.encoder == "tiny_vit":
        from .modeling.tiny_vit import TinyViT

        return TinyViT(img_size=config.image_size, in_chans=3, **args)
    raise ValueError(f"model {config.name!r} has encoder {config.encoder!r}, which is not a SAM-family encoder")


def build_prompt_encoder(config: ModelConfig) -> PromptEncoder:
    """SAM's prompt encoder for the config's input and embedding sizes."""
    e = config.embedding_size
    return PromptEncoder(
        embed_dim=config.prompt_embed_dim,
        image_embedding_size=(e, e),
        input_image_size=(config.image_size, config.image_size),
        mask_in_chans=MASK_IN_CHANS,
    )


def build_mask_decoder(config: ModelConfig) -> MaskDecoder:
    """SAM's mask decoder (two-way transformer, depth 2, 8 heads, MLP 2048, ReLU)."""
    dim = config.prompt_embed_dim
    transformer = TwoWayTransformer(depth=DECODER_DEPTH, embedding_dim=dim, num_heads=DECODER_HEADS, mlp_dim=DECODER_MLP_DIM)
    return MaskDecoder(
        transformer_dim=dim, transformer=transformer, num_multimask_outputs=3, iou_head_depth=3, iou_head_hidden_dim=256
    )


def build_model(config: ModelConfig) -> nn.Module:
    """Randomly initialized model for a config (train mode, no checkpoint)."""
    if config.encoder == "efficientsam_vit":
        from .modeling.efficient_sam import build_efficient_sam

        return build_efficient_sam(config)
    return Sam(config, build_image_encoder(config), build_prompt_encoder(config), build_mask_decoder(config))


def build_sam(
    name: str,
    checkpoint: str | Path | None = None,
    image_size: int | None = None,
    seed: int | None = None,
    allow_nonfinite: bool = False,
) -> nn.Module:
    """Build a model by name, in eval mode on CPU, optionally loading a checkpoint.

    `image_size` below the native 1024 keeps the architecture and keys (SAM ViT position tables are
    resized on load). `seed` makes the random initialization reproducible without touching the
    global RNG. NaN/Inf weights are refused unless `allow_nonfinite`. The result carries `checkpoint_sha256` (None without a checkpoint) and `trained`.
    """
    from .checkpoint import file_sha256, load_state_dict_into, read_state_dict

    config = get_config(name, image_size)
    # Read (and so reject a bad file) before spending time and memory on building the model.
    state = read_state_dict(checkpoint) if checkpoint is not None else None
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(config)
    else:
        model = build_model(config)
    sha = None
    if state is not None:
        load_state_dict_into(model, state, f"checkpoint {Path(checkpoint).name}", allow_nonfinite)
        sha = file_sha256(checkpoint)
    model.checkpoint_sha256 = sha
    model.trained = sha is not None
    return model.eval()
