"""Per-model export adapters: what a model family exports, chosen from `ModelConfig.encoder`.

An adapter says, for one family, which tensors the encoder and the decoder take and give (names,
shapes, meanings: `ExportSpec` derives its signatures from it), the example inputs the exporters trace
with, and the graph-compaction hooks: the small tables a model gathers into big tensors that the
exporters fold into constants (TinyViT's attention biases, SAM ViT's relative positions), which the
backends' compaction passes compute in-graph again. A new family (e.g. an encoder with several outputs)
is one new adapter and one line in `ADAPTERS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mobile_runtime.package_format import FAST_SLOTS, LABEL, MASK_INPUTS, N_SLOTS, TensorSpec

if TYPE_CHECKING:
    import torch

    from tinysam.config import ModelConfig


@dataclass(frozen=True)
class TableLookup:
    """A tensor a model computes as `table[index]` along `axis` (modules holding both attributes)."""

    kind: str
    table_attr: str
    index_attr: str
    axis: int


@dataclass(frozen=True)
class ModelAdapter:
    """What one model family exports. Subclasses change the parts that differ."""

    name: str
    table_lookups: tuple[TableLookup, ...] = ()
    dense_positional_encoding: bool = True  # the decoder's dense PE (random Fourier features) is folded too

    # --- signatures ------------------------------------------------------------------------------
    def encoder_inputs(self, config: ModelConfig) -> list[TensorSpec]:
        """Encoder inputs (logical names)."""
        s = config.image_size
        return [TensorSpec("image", (1, 3, s, s), "float32",
                           "RGB, resized, normalized with pixel_mean/std, zero-padded bottom/right")]

    def encoder_outputs(self, config: ModelConfig) -> list[TensorSpec]:
        """Encoder outputs (logical names)."""
        e = config.embedding_size
        return [TensorSpec("image_embeddings", (1, 256, e, e), "float32", "image embedding, computed once per image")]

    def decoder_inputs(self, config: ModelConfig, k: int | str) -> list[TensorSpec]:
        """Batched prompt decoder inputs for K prompts per call (without `MASK_INPUTS` for models that
        take no mask input: every target exports exactly these)."""
        e, n, lr = config.embedding_size, N_SLOTS, 4 * config.embedding_size
        ins = [
            TensorSpec("image_embeddings", (1, 256, e, e), "float32", "encoder output"),
            TensorSpec("point_coords", (k, n, 2), "float32",
                       "x,y in the model input frame (after resize, before padding); unused slots 0"),
            TensorSpec("point_labels", (k, n), "float32", "see prompts.labels; unused slots -2"),
            TensorSpec("mask_input", (k, 1, lr, lr), "float32", "previous low-res logits, zeros if none"),
            TensorSpec("has_mask_input", (k,), "float32", "1 if mask_input is used for this prompt, else 0"),
        ]
        return ins if config.supports_mask_input else [t for t in ins if t.name not in MASK_INPUTS]

    def decoder_outputs(self, config: ModelConfig, k: int | str) -> list[TensorSpec]:
        """Batched prompt decoder outputs (all four mask tokens, before selection)."""
        lr = 4 * config.embedding_size
        return [
            TensorSpec("low_res_masks", (k, 4, lr, lr), "float32",
                       "mask logits for tokens 0..3 (0 = single-mask token); threshold 0"),
            TensorSpec("iou_predictions", (k, 4), "float32", "predicted IoU per mask token"),
        ]

    def prep_outputs(self, config: ModelConfig) -> list[TensorSpec]:
        """Outputs of the split decoder's per-image prep graph (its input is the image embedding)."""
        hw, c = config.embedding_size ** 2, config.prompt_embed_dim
        ci = c // 2  # SAM's cross attentions project to half the width
        return [
            TensorSpec("keys", (1, hw, c), "float32", "image embedding + no-mask dense embedding, pixels x channels"),
            TensorSpec("key_pe", (1, hw, c), "float32", "dense positional encoding, pixels x channels"),
            TensorSpec("t2i_k", (1, hw, ci), "float32", "layer-1 token->image key projection of keys + key_pe"),
            TensorSpec("t2i_v", (1, hw, ci), "float32", "layer-1 token->image value projection of keys"),
            TensorSpec("i2t_q", (1, hw, ci), "float32", "layer-1 image->token query projection of keys + key_pe"),
        ]

    def fast_decoder_inputs(self, config: ModelConfig, k: int | str) -> list[TensorSpec]:
        """Inputs of the split decoder's per-prompt graph: the prep outputs and K prompts of FAST_SLOTS slots."""
        return self.prep_outputs(config) + [
            TensorSpec("point_coords", (k, FAST_SLOTS, 2), "float32",
                       "x,y in the model input frame; one point and its pad point, or one box"),
            TensorSpec("point_labels", (k, FAST_SLOTS), "float32", "see prompts.labels; unused slots -2"),
        ]

    # --- example inputs (tracing / conversion samples) --------------------------------------------
    def encoder_example(self, config: ModelConfig) -> tuple[torch.Tensor, ...]:
        """One random normalized image, exactly `encoder_inputs`."""
        import torch

        s = config.image_size
        return (torch.randn(1, 3, s, s),)

    def decoder_example(self, config: ModelConfig, k: int) -> tuple[torch.Tensor, ...]:
        """Example inputs for the K-prompt decoder, exactly `decoder_inputs(config, k)`: one positive
        point, one padding point, the other slots empty."""
        import torch

        e, n, lr = config.embedding_size, N_SLOTS, 4 * config.embedding_size
        coords = torch.rand(k, n, 2) * config.image_size
        labels = torch.full((k, n), float(LABEL.EMPTY_SLOT))
        labels[:, 0] = float(LABEL.POS)
        labels[:, 1] = float(LABEL.PAD)
        sample = {"image_embeddings": torch.randn(1, 256, e, e), "point_coords": coords, "point_labels": labels,
                  "mask_input": torch.zeros(k, 1, lr, lr), "has_mask_input": torch.zeros(k)}
        return tuple(sample[t.name] for t in self.decoder_inputs(config, k))

    def fast_decoder_example(self, config: ModelConfig, k: int) -> tuple[torch.Tensor, ...]:
        """Example inputs of the per-prompt split decoder, exactly `fast_decoder_inputs(config, k)`."""
        import torch

        sample = [torch.randn(t.shape) for t in self.prep_outputs(config)]
        coords = torch.rand(k, FAST_SLOTS, 2) * config.image_size
        labels = torch.full((k, FAST_SLOTS), float(LABEL.PAD))
        labels[:, 0] = float(LABEL.POS)
        return (*sample, coords, labels)


TINY_VIT_SAM = ModelAdapter(
    "TinyViT-SAM",
    table_lookups=(TableLookup("attention_bias", "attention_biases", "attention_bias_idxs", axis=1),),
)
VIT_SAM = ModelAdapter(
    "ViT-SAM",
    table_lookups=(TableLookup("rel_pos", "rel_pos_h", "rel_index_h", axis=0),
                   TableLookup("rel_pos", "rel_pos_w", "rel_index_w", axis=0)),
)
EFFICIENT_SAM = ModelAdapter("EfficientSAM")

# ModelConfig.encoder -> adapter (one line per family)
ADAPTERS: dict[str, ModelAdapter] = {"tiny_vit": TINY_VIT_SAM, "vit": VIT_SAM, "efficientsam_vit": EFFICIENT_SAM}


def table_lookups(model: torch.nn.Module) -> tuple[TableLookup, ...]:
    """The table lookups to look for in `model`: its family's (a whole model, from `model.config`), or
    every family's for a bare part (e.g. one attention block)."""
    config = getattr(model, "config", None)
    if config is not None:
        return adapter_for(config).table_lookups
    return tuple(dict.fromkeys(lk for a in ADAPTERS.values() for lk in a.table_lookups))


def folds_dense_positional_encoding(model: torch.nn.Module) -> bool:
    """Whether the decoder's dense positional encoding of `model` is folded by the exporters (bare parts: look)."""
    config = getattr(model, "config", None)
    return True if config is None else adapter_for(config).dense_positional_encoding


def adapter_for(config: ModelConfig) -> ModelAdapter:
    """The export adapter of `config`'s model family; an unknown encoder is refused with the known ones."""
    try:
        return ADAPTERS[config.encoder]
    except KeyError:
        raise ValueError(f"no export adapter for encoder {config.encoder!r}; known: {', '.join(ADAPTERS)}") from None
