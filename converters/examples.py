"""Example inputs of the exported graphs (tracing / conversion samples), shared by every backend.

They come from the model family's export adapter (`converters.adapters`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from converters.spec import ExportSpec


def encoder_sample(spec: ExportSpec) -> tuple[torch.Tensor, ...]:
    """Example inputs for the encoder, exactly `spec.encoder_inputs()` (one normalized image)."""
    return spec.adapter.encoder_example(spec.config)


def decoder_sample(spec: ExportSpec, k: int) -> tuple[torch.Tensor, ...]:
    """Example inputs for the K-prompt decoder, exactly `spec.decoder_inputs(k)` (names, shapes)."""
    return spec.adapter.decoder_example(spec.config, k)


def fast_decoder_sample(spec: ExportSpec, k: int) -> tuple[torch.Tensor, ...]:
    """Example inputs of the split decoder's per-prompt graph, exactly `spec.fast_decoder_inputs(k)`."""
    return spec.adapter.fast_decoder_example(spec.config, k)
