"""Shared pytest setup.

``segment-anything`` (a test-only oracle) imports torchvision, which is not installed here.
This installs a tiny shim for the few torchvision names it imports:
``torchvision.transforms.functional.resize/to_pil_image`` (PIL based) and
``torchvision.ops.boxes.batched_nms/box_area`` (plain greedy NMS).
"""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest


def _install_torchvision_shim() -> None:
    """Register a minimal ``torchvision`` in ``sys.modules`` if the real one is missing."""
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return
    import torch
    from PIL import Image

    def to_pil_image(pic):  # noqa: ANN001, ANN202
        arr = pic.detach().cpu().numpy() if isinstance(pic, torch.Tensor) else np.asarray(pic)
        if isinstance(pic, torch.Tensor) and arr.ndim == 3:
            arr = np.transpose(arr, (1, 2, 0))
        if arr.dtype != np.uint8:
            arr = (arr * 255).clip(0, 255).astype(np.uint8) if arr.max() <= 1.0 else arr.astype(np.uint8)
        return Image.fromarray(arr.squeeze(-1) if arr.ndim == 3 and arr.shape[-1] == 1 else arr)

    def resize(img, size, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if isinstance(img, Image.Image):
            h, w = (size, size) if isinstance(size, int) else size
            return img.resize((w, h), Image.BILINEAR)
        return torch.nn.functional.interpolate(img[None].float(), size=tuple(size), mode="bilinear",
                                               align_corners=False)[0]

    def box_area(boxes):  # noqa: ANN001, ANN202
        return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])

    def _iou(box, boxes):  # noqa: ANN001, ANN202
        lt = torch.maximum(box[:2], boxes[:, :2])
        rb = torch.minimum(box[2:], boxes[:, 2:])
        wh = (rb - lt).clamp(min=0)
        inter = wh[:, 0] * wh[:, 1]
        return inter / (box_area(box[None]) + box_area(boxes) - inter)

    def batched_nms(boxes, scores, idxs, iou_threshold):  # noqa: ANN001, ANN202
        keep: list[int] = []
        order = torch.argsort(scores, descending=True, stable=True)  # as torchvision's CPU kernel
        suppressed = torch.zeros(len(boxes), dtype=torch.bool)
        for i in order.tolist():
            if suppressed[i]:
                continue
            keep.append(i)
            same = idxs == idxs[i]
            suppressed |= same & (_iou(boxes[i], boxes) > iou_threshold)
        return torch.tensor(keep, dtype=torch.int64)

    tv = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.resize = resize
    functional.to_pil_image = to_pil_image
    ops = types.ModuleType("torchvision.ops")
    boxes_mod = types.ModuleType("torchvision.ops.boxes")
    boxes_mod.batched_nms = batched_nms
    boxes_mod.box_area = box_area
    ops.batched_nms = batched_nms
    ops.box_area = box_area
    ops.boxes = boxes_mod
    transforms.functional = functional
    tv.transforms = transforms
    tv.ops = ops
    for name, mod in {"torchvision": tv, "torchvision.transforms": transforms,
                      "torchvision.transforms.functional": functional, "torchvision.ops": ops,
                      "torchvision.ops.boxes": boxes_mod}.items():
        sys.modules[name] = mod


_install_torchvision_shim()


@pytest.fixture(scope="session")
def tinysam128_onnx_package(tmp_path_factory):
    """One TinySAM-128 (seeded, untrained) ONNX fp32 package per test session, parity-checked.

    Returns the converters' `PackageResult` (`.path` is the package directory). Treat it as
    read-only: copy it (shutil.copytree) before modifying anything.
    """
    from converters.api import build_package, load_model
    from converters.options import ConvertOptions

    model, info = load_model("tinysam", None, 128, seed=0)
    return build_package(model, info, "onnx", ConvertOptions(precision="fp32", out_dir=tmp_path_factory.mktemp("tinysam128_onnx")))
