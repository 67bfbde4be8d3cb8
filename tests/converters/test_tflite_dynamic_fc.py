"""LiteRT's dynamic-range FULLY_CONNECTED computes what `fake_quant_rows` models (the w8a8 post-GELU layers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn


def _dynamic_fc(linear: nn.Linear, x: torch.Tensor, path) -> np.ndarray:  # noqa: ANN001
    """`linear` converted to LiteRT with int8 weights and a dynamic-range FC; its output on `x`."""
    import litert_torch
    from ai_edge_litert.interpreter import Interpreter
    from litert_quantizer import qtyping, quantizer, recipe_manager

    from converters.logs import quiet

    src, dst = path / "fc.tflite", path / "fc_dyn.tflite"
    with quiet():
        litert_torch.convert(linear.eval(), (x,)).export(str(src))
        rm = recipe_manager.RecipeManager()
        rm.add_dynamic_config(".*", qtyping.TFLOperationName("FULLY_CONNECTED"), 8)
        q = quantizer.Quantizer(str(src))
        q.load_quantization_recipe(rm.get_quantization_recipe())
        q.quantize().export_model(str(dst), overwrite=True)
    it = Interpreter(str(dst), num_threads=1)
    assert any(o["op_name"] == "FULLY_CONNECTED" for o in it._get_ops_details())  # noqa: SLF001
    return next(iter(it.get_signature_runner()(args_0=x.numpy()).values()))


def test_dynamic_fc_matches_per_row_fake_quant(tmp_path):
    from tinysam.quant.quantizer import fake_quant, fake_quant_rows, max_scale_per_channel

    torch.manual_seed(0)
    linear = nn.Linear(256, 64)
    # post-GELU rows: mostly small, a few large positives, negatives down to -0.17, each row its own range
    x = nn.functional.gelu(torch.randn(1, 196, 256) * torch.linspace(0.5, 4, 196)[None, :, None])
    got = _dynamic_fc(linear, x, tmp_path)
    w = fake_quant(linear.weight, max_scale_per_channel(linear.weight, 8)[:, None], 8)
    with torch.no_grad():
        modelled = nn.functional.linear(fake_quant_rows(x, 8), w, linear.bias).numpy()
        float_in = nn.functional.linear(x, w, linear.bias).numpy()
    err_model, err_float = np.abs(got - modelled).mean(), np.abs(got - float_in).mean()
    # the per-row model explains LiteRT's output far better than int8 weights with a float input do
    print("ERR", err_model, err_float)
    assert err_model < 0.2 * err_float, (err_model, err_float)


@pytest.mark.parametrize("shift", [0.0, -0.17, 3.0])
def test_fake_quant_rows_grid(shift):
    from tinysam.quant.quantizer import fake_quant_rows

    torch.manual_seed(1)
    x = torch.randn(8, 100) * torch.arange(1, 9)[:, None] + shift
    x[:, 0] = 0.0
    y = fake_quant_rows(x, 8)
    assert torch.all(y[:, 0] == 0)  # zero is exact
    lo, hi = x.amin(-1).clamp_max(0), x.amax(-1).clamp_min(0)
    step = (hi - lo) / 255
    assert torch.all((y - x).abs() <= step[:, None] / 2 + 1e-6)  # each row within half of its own step
    assert len({round(float(s), 6) for s in step}) == 8  # every row its own range
