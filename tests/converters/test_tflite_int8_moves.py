"""`converters.backends.litert.int8_moves`: data movement runs on int8 in static int8 graphs, values bit for bit."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from converters.backends.litert.int8_moves import move_int8_data


class PadTokens(nn.Module):
    """A stride-2 conv with padding 1 (an explicit PAD in LiteRT), then TinyViT-style token moves."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(nn.functional.gelu(x))  # GELU stays float: QUANTIZE -> PAD -> CONV
        b, c, h, w = y.shape
        t = self.fc1(y.flatten(2).transpose(1, 2))  # [B, HW, 32]
        t = t.reshape(b, h, w, 2, 16).permute(0, 3, 1, 2, 4).reshape(b * 2, h * w, 16)  # head split
        return self.fc2(torch.cat([t[0], t[1]], dim=-1)[None])


def _quantized(tmp_path, ops: tuple[str, ...], samples: list[np.ndarray], symmetric: bool) -> tuple:  # noqa: ANN001
    """The module converted, `ops` static int8 with ranges from `samples` (zero point 0 if
    `symmetric`, as the w8a8 recipe's scales are); (path, input)."""
    import litert_torch
    from litert_quantizer import qtyping, quantizer, recipe_manager

    from converters.logs import quiet

    torch.manual_seed(0)
    x = torch.randn(1, 8, 16, 16)
    src, dst = tmp_path / "f.tflite", tmp_path / "q.tflite"
    with quiet():
        litert_torch.convert(PadTokens().eval(), (x,)).export(str(src))
        rm = recipe_manager.RecipeManager()
        for op in ops:
            rm.add_static_config(".*", qtyping.TFLOperationName(op), 8, 8)
        q = quantizer.Quantizer(str(src))
        q.load_quantization_recipe(rm.get_quantization_recipe())
        stats = q.calibrate({"serving_default": [{"args_0": a} for a in samples]})
        for st in stats.values() if symmetric else ():
            m = np.maximum(np.abs(st["min"]), np.abs(st["max"]))
            st["min"], st["max"] = -m * 128 / 127, m
        q.quantize(stats).export_model(str(dst), overwrite=True)
    return dst, x.numpy()


def _float_moves(path) -> dict[str, int]:  # noqa: ANN001
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    dtype = {d["index"]: d["dtype"] for d in it.get_tensor_details()}
    out: dict[str, int] = {}
    for o in it._get_ops_details():  # noqa: SLF001 - the interpreter's only op listing
        if o["op_name"] in ("TRANSPOSE", "RESHAPE", "SLICE", "STRIDED_SLICE", "PAD") and dtype[o["outputs"][0]] == np.float32:
            out[o["op_name"]] = out.get(o["op_name"], 0) + 1
    return out


def _run(path, x: np.ndarray) -> np.ndarray:  # noqa: ANN001
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()


def test_moves_run_on_int8_and_values_are_identical(tmp_path):
    rng = np.random.default_rng(1)
    samples = [rng.standard_normal((1, 8, 16, 16)).astype(np.float32) for _ in range(4)]
    path, x = _quantized(tmp_path, ("CONV_2D", "FULLY_CONNECTED"), samples, symmetric=True)
    want = _run(path, x)
    before = _float_moves(path)
    assert before.get("PAD") and before.get("TRANSPOSE"), before  # the pattern is there to move
    n = move_int8_data(path)
    after = _float_moves(path)
    assert n > 0
    assert not after.get("PAD"), after  # the zero pad now reads int8, right before the int8 conv
    assert sum(after.values()) < sum(before.values()), (before, after)
    np.testing.assert_array_equal(_run(path, x), want)
    assert move_int8_data(path) == 0  # nothing left to move: the pass is idempotent


def test_nonzero_zero_point_keeps_the_pad_float(tmp_path):
    """A zero pad on int8 is exact only when the zero point is 0; otherwise the PAD stays float."""
    skewed = [np.abs(np.random.default_rng(1).standard_normal((1, 8, 16, 16))).astype(np.float32) + 0.5]
    dst, x = _quantized(tmp_path, ("CONV_2D",), skewed, symmetric=False)  # zero point != 0
    want = _run(dst, x)
    move_int8_data(dst)
    assert _float_moves(dst).get("PAD") == 1
    np.testing.assert_array_equal(_run(dst, x), want)

