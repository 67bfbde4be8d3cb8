"""Per-family export adapters: chosen from ModelConfig, and ExportSpec's signatures come from them."""

from __future__ import annotations

import dataclasses

import pytest

from converters.adapters import ADAPTERS, EFFICIENT_SAM, TINY_VIT_SAM, VIT_SAM, adapter_for
from converters.examples import decoder_sample, encoder_sample
from converters.spec import ExportSpec
from mobile_runtime.package_format import MASK_INPUTS
from tinysam.config import MODEL_CONFIGS, get_config


def test_every_model_has_an_adapter():
    assert adapter_for(get_config("tinysam")) is TINY_VIT_SAM and adapter_for(get_config("mobilesam")) is TINY_VIT_SAM
    assert adapter_for(get_config("sam_vit_b")) is VIT_SAM and adapter_for(get_config("efficientsam_ti")) is EFFICIENT_SAM
    assert {c.encoder for c in MODEL_CONFIGS.values()} <= set(ADAPTERS)
    assert [lk.kind for lk in TINY_VIT_SAM.table_lookups] == ["attention_bias"]
    assert [lk.table_attr for lk in VIT_SAM.table_lookups] == ["rel_pos_h", "rel_pos_w"]


def test_unknown_encoder_refused_with_the_known_ones():
    cfg = dataclasses.replace(get_config("tinysam"), encoder="hiera")
    with pytest.raises(ValueError, match="no export adapter for encoder 'hiera'; known: tiny_vit, vit, efficientsam_vit"):
        adapter_for(cfg)


@pytest.mark.parametrize("name", ["tinysam", "sam_vit_b", "efficientsam_ti"])
def test_spec_signatures_and_examples_agree(name):
    spec = ExportSpec(get_config(name, 128), "onnx", "fp32")
    ins = spec.decoder_inputs(4)
    assert [t.name for t in ins] == [t.name for t in spec.adapter.decoder_inputs(spec.config, 4)]
    assert (not any(t.name in MASK_INPUTS for t in ins)) == (not spec.config.supports_mask_input)
    assert [tuple(x.shape) for x in decoder_sample(spec, 4)] == [t.shape for t in ins]
    assert [tuple(x.shape) for x in encoder_sample(spec)] == [t.shape for t in spec.encoder_inputs()]
    assert spec.encoder_outputs()[0].shape == (1, 256, spec.embedding_size, spec.embedding_size)
