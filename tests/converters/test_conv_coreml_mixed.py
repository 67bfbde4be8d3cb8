"""CoreML mixed plan: the stem's BatchNorm-folded conv weights (generic `const_N` names) stay float."""

from __future__ import annotations

import copy

import torch
from torch import nn

from converters.backends.coreml.export import _convert, _quantize
from converters.precision import precision_plan
from converters.spec import ExportSpec
from mobile_runtime.backends.coreml_emulator.program import load_spec


class _EncoderHead(nn.Module):
    """The real TinySAM stem plus its first stage, under the same module paths as in the model."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.image_encoder = nn.Module()
        self.image_encoder.patch_embed = model.image_encoder.patch_embed
        self.image_encoder.layers = nn.ModuleList([model.image_encoder.layers[0]])

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder.layers[0](self.image_encoder.patch_embed(image))


def test_mixed_plan_keeps_folded_stem_convs_float(tiny_model, tmp_path):
    model, _ = tiny_model
    head = _EncoderHead(copy.deepcopy(model)).eval()  # never touch the shared session model
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding changes the weights
        for m in head.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
                m.running_mean.uniform_(-0.1, 0.1)
    ml = _convert(head, (torch.randn(1, 3, 128, 128),), ["image"], ["out"], "fp32")
    ml = _quantize(ml, head, precision_plan("mixed"))
    ml.save(str(tmp_path / "head.mlpackage"))
    spec = load_spec(tmp_path / "head.mlpackage")
    producer = {o.name: op.type for op in spec.block.operations for o in op.outputs}
    convs = [op for op in spec.block.operations if op.type == "conv"]
    kinds = [producer[op.inputs["weight"].arguments[0].name] for op in convs]
    assert kinds[:2] == ["const", "const"]  # both stem convs: float weights
    assert all(k.startswith("constexpr") for k in kinds[2:] if k != "const")
    assert any(k.startswith("constexpr") for k in kinds[2:])  # the rest of the stage is int8
    assert ExportSpec(model.config, "coreml", "mixed").precision == "mixed"
