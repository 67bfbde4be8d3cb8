"""ONNX int8 weight storage with float compute (`converters.backends.onnx.weight_only`), run in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from converters.backends.onnx.weight_only import quantize_weights_int8


class Small(nn.Module):
    """Conv, Linear used twice (a shared weight), ConvTranspose: every op kind the pass handles."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 8)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).permute(0, 2, 3, 1)
        y = self.fc(torch.relu(self.fc(y))).permute(0, 3, 1, 2)
        return self.up(y)


def _max_int8(w: torch.Tensor, axis: int) -> torch.Tensor:
    dims = [d for d in range(w.dim()) if d != axis]
    shape = [1] * w.dim()
    shape[axis] = -1
    scale = (w.abs().amax(dim=dims) / 127).reshape(shape)
    return torch.round(w / scale).clamp(-127, 127) * scale


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = Small().eval()
    d = tmp_path_factory.mktemp("wo")
    src = d / "fp32.onnx"
    with torch.no_grad():
        torch.onnx.export(model, (torch.randn(1, 3, 8, 8),), str(src), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"])
    return model, src, d


def _run(path, x: np.ndarray, optimized: str | None = None) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    if optimized:
        so.optimized_model_filepath = optimized
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_int8_weights_compute_like_the_fake_quant_model_and_fold_at_load(exported):
    import onnx

    model, src, d = exported
    dst = d / "wo.onnx"
    res = quantize_weights_int8(src, dst)
    assert len(res["quantized"]) == 4 and res["kept_float"] == []  # conv, fc twice, conv-transpose
    g = onnx.load(str(dst)).graph
    int8 = [i for i in g.initializer if i.data_type == onnx.TensorProto.INT8]
    assert len(int8) == 3  # the shared fc weight is stored once
    assert not [i for i in g.initializer if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) >= 2
                and int(np.prod(i.dims)) > 8]  # no float weight matrix left (scales are per channel)
    fq = Small().eval()
    fq.load_state_dict(model.state_dict())
    with torch.no_grad():
        fq.conv.weight.copy_(_max_int8(model.conv.weight, 0))
        fq.fc.weight.copy_(_max_int8(model.fc.weight, 0))
        fq.up.weight.copy_(_max_int8(model.up.weight, 1))
        x = torch.randn(1, 3, 8, 8)
        want, ref = fq(x).numpy(), model(x).numpy()
    opt = d / "optimized.onnx"
    got = _run(dst, x.numpy(), str(opt))
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(got - ref).max() > 1e-4  # the weights really are quantized
    ops = {n.op_type for n in onnx.load(str(opt)).graph.node}
    assert "Cast" not in ops and "DynamicQuantizeLinear" not in ops  # folded at load, float compute


def test_excluded_nodes_keep_float_weights(exported):
    import onnx

    model, src, d = exported
    conv = next(n.name for n in onnx.load(str(src)).graph.node if n.op_type == "Conv")
    res = quantize_weights_int8(src, d / "keep.onnx", {conv})
    assert res["kept_float"] == [conv] and conv not in res["quantized"]
    node = next(n for n in onnx.load(str(d / "keep.onnx")).graph.node if n.name == conv)
    assert not node.input[1].endswith("_int8w_float")
