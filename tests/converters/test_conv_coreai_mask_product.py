"""The Core AI decoder workaround: the rewritten mask product equals the reference decoder in torch
(no Core AI needed), and the miscompile it avoids is still there (so the workaround is still needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from converters.backends.coreai.mask_product import mask_product_nodes, transpose_mask_product
from converters.examples import decoder_sample
from converters.spec import ExportSpec
from converters.wrappers import decoder_module


@pytest.mark.parametrize("k", [1, 16])
def test_rewritten_decoder_equals_reference(tiny_model, k):
    model, _ = tiny_model
    spec = ExportSpec(model.config, "coreai", "fp32")
    dec = decoder_module(model).eval()
    args = decoder_sample(spec, k)
    args[3][:1] = torch.randn_like(args[3][:1])
    args[4][:1] = 1.0
    ep = torch.export.export(dec, args).run_decompositions()
    with torch.no_grad():
        before = ep.module()(*args)
        transpose_mask_product(ep, 4, spec.low_res_size)
        after = ep.module()(*args)
        ref = dec(*args)
    assert mask_product_nodes(ep, 4, spec.low_res_size) == []  # the product now reads transposed operands
    for a, b, r in zip(after, before, ref):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-6)  # same math, another summation order
        torch.testing.assert_close(a, r, atol=2e-5, rtol=1e-6)
    with pytest.raises(RuntimeError, match="expected one mask product"):
        transpose_mask_product(ep, 4, spec.low_res_size)  # nothing left to rewrite: refused, not ignored


class _Product(torch.nn.Module):
    def __init__(self, transposed: bool) -> None:
        super().__init__()
        self.transposed = transposed

    def forward(self, a: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        b, c, h, w = u.shape
        flat = u.reshape(b, c, h * w)
        if self.transposed:
            return (flat.transpose(1, 2) @ a.transpose(1, 2)).transpose(1, 2)
        return a @ flat


def test_miscompile_reproduction(tmp_path):
    """The upstream report's smallest reproduction: [1,4,32] @ reshape([1,32,32,32] -> [1,32,1024])."""
    pytest.importorskip("coreai.runtime")
    pytest.importorskip("coreai_torch")
    from converters.backends.coreai.export import save_asset
    from mobile_runtime.backends import open_model

    gen = torch.Generator().manual_seed(0)
    a, u = torch.randn(1, 4, 32, generator=gen), torch.randn(1, 32, 32, 32, generator=gen)
    errors = {}
    for transposed in (False, True):
        mod = _Product(transposed)
        ep = torch.export.export(mod, (a, u)).run_decompositions()
        path = tmp_path / f"product_{transposed}.aimodel"
        save_asset([(ep, ["a", "u"], ["m"], "main")], path)
        got = open_model(path, "coreai").run({"a": a.numpy(), "u": u.numpy()})["m"]
        errors[transposed] = float(np.abs(got - (a @ u.reshape(1, 32, 1024)).numpy()).max())
    assert errors[True] < 1e-4, errors
    # If this fails, Core AI computes the plain product correctly now: drop the rewrite (mask_product.py).
    assert errors[False] > 1.0, errors
