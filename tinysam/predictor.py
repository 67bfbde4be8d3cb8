"""Reference predictor: one encoder pass per image, then cheap prompt decoding.

Works with every model built by ``tinysam.build_sam`` (SAM family and EfficientSAM) through the
shared model surface (``preprocess``, ``encode_image``, ``decode_prompts``, ``select_masks``,
``postprocess_masks``). Prompt assembly follows docs/interfaces.md so the mobile runtime can
mirror it exactly.
"""

from __future__ import annotations

import numpy as np
import torch

from .modeling.prompt_encoder import EMPTY_SLOT_LABEL, PAD_LABEL
from .utils.transforms import transform_for_config, validate_image

# Labels a caller may pass to `predict` (user-facing points) and to `predict_torch` (model frame).
USER_POINT_LABELS = {"sam": (0, 1), "efficientsam": (1,)}
MODEL_LABELS = {"sam": (EMPTY_SLOT_LABEL, PAD_LABEL, 0, 1, 2, 3), "efficientsam": (EMPTY_SLOT_LABEL, PAD_LABEL, 1, 2, 3)}


def check_finite(name: str, x: torch.Tensor) -> None:
    """Raise ValueError if ``x`` holds NaN or infinity."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def check_labels(labels: torch.Tensor, allowed: tuple[int, ...], family: str) -> None:
    """Raise ValueError if ``labels`` holds a value outside ``allowed``."""
    bad = sorted({int(v) for v in labels.flatten().tolist()} - set(allowed))
    if bad:
        raise ValueError(f"point labels {bad} are not valid for the {family} family; allowed: {list(allowed)}")


def check_boxes(boxes: torch.Tensor) -> None:
    """Raise ValueError unless ``boxes`` is [K, 4] XYXY with x1 >= x0 and y1 >= y0, all finite."""
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape [K, 4] (x0, y0, x1, y1), got {list(boxes.shape)}")
    check_finite("box", boxes)
    if bool((boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any()):
        raise ValueError("box must satisfy x1 >= x0 and y1 >= y0 (XYXY order)")


def assemble_prompts(
    point_coords: torch.Tensor | None,
    point_labels: torch.Tensor | None,
    boxes: torch.Tensor | None,
    family: str,
    max_points: int | None = None,
    num_prompts: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Build the decoder's (coords [K,N,2] float, labels [K,N] int) from points and/or boxes.

    SAM family: points, then the box as two corners (labels 2, 3); without a box ONE padding
    point (0, 0) with label -1 is appended. With neither points nor box (mask-only prompt) a
    single empty slot (label -2) is produced, equivalent to no sparse prompt at all.
    EfficientSAM: points, then box corners, then padding (label -1, coords 0) up to
    ``max_points``, or truncation to ``max_points``. ``num_prompts`` (K) is only needed when
    there are neither points nor boxes.
    """
    coords, labels = [], []
    k = num_prompts if num_prompts is not None else _prompt_count(point_coords, boxes)
    if point_coords is not None:
        coords.append(point_coords.float())
        labels.append(point_labels.to(torch.int64))
    if boxes is not None:
        coords.append(boxes.float().reshape(k, 2, 2))
        labels.append(torch.tensor([[2, 3]], dtype=torch.int64).expand(k, 2))
    if family == "sam":
        if boxes is None:
            pad_label = PAD_LABEL if point_coords is not None else EMPTY_SLOT_LABEL
            coords.append(torch.zeros(k, 1, 2))
            labels.append(torch.full((k, 1), pad_label, dtype=torch.int64))
        return torch.cat(coords, dim=1), torch.cat(labels, dim=1)
    if not coords:
        raise ValueError("EfficientSAM needs at least one point or a box")
    c, lab = torch.cat(coords, dim=1), torch.cat(labels, dim=1)
    if max_points is not None:
        n = c.shape[1]
        if n > max_points:
            c, lab = c[:, :max_points], lab[:, :max_points]
        elif n < max_points:
            c = torch.cat([c, torch.zeros(k, max_points - n, 2)], dim=1)
            lab = torch.cat([lab, torch.full((k, max_points - n), -1, dtype=torch.int64)], dim=1)
    return c, lab


def _prompt_count(point_coords: torch.Tensor | None, boxes: torch.Tensor | None) -> int:
    if point_coords is not None:
        return int(point_coords.shape[0])
    if boxes is not None:
        return int(boxes.shape[0])
    return 1


def pick_best_mask(
    low_res: torch.Tensor, iou: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep, per prompt, the mask with the highest predicted IoU: [K,M,...] -> [K,1,...]."""
    best = iou.argmax(dim=1)
    rows = torch.arange(iou.shape[0])
    return low_res[rows, best][:, None], iou[rows, best][:, None]


class SamPredictor:
    """Set an image once (one encoder pass), then predict masks for any number of prompts."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.config = model.config
        self.transform = transform_for_config(model.config)
        self.reset_image()

    @property
    def device(self) -> torch.device:
        """Device of the model."""
        return next(self.model.parameters()).device

    @property
    def family(self) -> str:
        """Prompt family of the model ("sam" or "efficientsam")."""
        return self.config.family

    def reset_image(self) -> None:
        """Forget the current image and its embedding."""
        self.is_image_set = False
        self.features: torch.Tensor | None = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None

    @torch.no_grad()
    def set_image(self, image: np.ndarray) -> None:
        """Resize, normalize and pad an RGB uint8 HxWx3 image, then run the encoder once."""
        validate_image(image)
        resized = self.transform.apply_image_tensor(image).to(self.device)
        self.set_torch_image(resized, (int(image.shape[0]), int(image.shape[1])))

    @torch.no_grad()
    def set_torch_image(self, resized: torch.Tensor, original_size: tuple[int, int]) -> None:
        """Encode an already resized float 0-255 image [1,3,h,w] of an (H, W) original."""
        if resized.dim() != 4 or resized.shape[:2] != (1, 3):
            raise ValueError(f"resized image must have shape [1, 3, h, w], got {list(resized.shape)}")
        self.reset_image()
        self.original_size = (int(original_size[0]), int(original_size[1]))
        self.input_size = (int(resized.shape[-2]), int(resized.shape[-1]))
        self.features = self.model.encode_image(self.model.preprocess(resized))
        self.is_image_set = True

    def get_image_embedding(self) -> torch.Tensor:
        """Image embedding [1, 256, E, E] of the current image."""
        self._require_image()
        return self.features

    def _require_image(self) -> None:
        if not self.is_image_set:
            raise RuntimeError("no image set: call set_image(image) before predicting")

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for one prompt given in original-image pixels.

        Args:
            point_coords: [N, 2] (x, y) pixels; point_labels: [N] (1 positive, 0 negative; the
                EfficientSAM family accepts only 1).
            box: [4] or [1, 4] XYXY pixels. mask_input: [1, 4E, 4E] low-res logits from a previous
                call (SAM family only).
            multimask_output: three masks (True) or one. TinySAM always decodes its three
                multimask outputs; with ``multimask_output=False`` it returns the single one of
                those three with the highest predicted IoU (a convenience, not a model output).
            return_logits: return float logits instead of boolean masks.

        Returns:
            masks [M, H, W], iou predictions [M], low-res logits [M, 4E, 4E] (numpy).
        """
        self._require_image()
        coords_t = labels_t = box_t = mask_t = None
        if point_coords is not None or point_labels is not None:
            coords_t, labels_t = self._user_points(point_coords, point_labels)
            if coords_t.shape[1] == 0:  # an empty point list is no prompt (as in the mobile runtime)
                coords_t = labels_t = None
        if box is not None:
            box_t = torch.as_tensor(np.asarray(box, dtype=np.float64).reshape(-1))
            if box_t.numel() != 4:
                raise ValueError(f"box must have 4 values (x0, y0, x1, y1), got {box_t.numel()}")
            check_boxes(box_t[None])
            box_t = torch.as_tensor(self.transform.apply_boxes(box_t.numpy()[None], self.original_size),
                                    dtype=torch.float, device=self.device)
        if mask_input is not None:
            mask_t = torch.as_tensor(np.asarray(mask_input), dtype=torch.float, device=self.device)
            if mask_t.dim() == 2:
                mask_t = mask_t[None]
            mask_t = mask_t[None]
        masks, iou, low_res = self.predict_torch(
            coords_t, labels_t, box_t, mask_t, multimask_output=multimask_output, return_logits=return_logits
        )
        return masks[0].cpu().numpy(), iou[0].cpu().numpy(), low_res[0].cpu().numpy()

    def _user_points(self, point_coords: np.ndarray | None, point_labels: np.ndarray | None):
        if point_coords is None or point_labels is None:
            raise ValueError("point_coords and point_labels must be given together")
        coords = np.asarray(point_coords, dtype=np.float64)
        labels = np.asarray(point_labels)
        if coords.ndim != 2 or coords.shape[1] != 2:
            raise ValueError(f"point_coords must have shape [N, 2], got {list(coords.shape)}")
        if labels.shape != (coords.shape[0],):
            raise ValueError(f"point_labels must have shape [{coords.shape[0]}], got {list(labels.shape)}")
        check_finite("point_coords", torch.as_tensor(coords))
        if labels.dtype.kind == "f" and not np.isfinite(labels).all():
            raise ValueError("point_labels contains NaN or infinite values")
        if labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)):
            raise ValueError("point_labels must be integers")
        labels_t = torch.as_tensor(labels.astype(np.int64))
        check_labels(labels_t, USER_POINT_LABELS[self.family], self.family)
        coords = self.transform.apply_coords(coords, self.original_size)
        return (torch.as_tensor(coords, dtype=torch.float, device=self.device)[None],
                labels_t.to(self.device)[None])

    @torch.no_grad()
    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched prediction with prompts already in the model input frame.

        Args:
            point_coords [K, N, 2], point_labels [K, N], boxes [K, 4] XYXY, mask_input
            [K, 1, 4E, 4E] low-res logits; see :meth:`predict` for the other arguments.

        Returns:
            masks [K, M, H, W] (bool, or float logits), iou [K, M], low-res logits [K, M, 4E, 4E].
        """
        self._require_image()
        k = self._validate_batch(point_coords, point_labels, boxes, mask_input)
        coords, labels = assemble_prompts(point_coords, point_labels, boxes, self.family, self.config.max_points, k)
        has_mask = None
        if mask_input is not None:
            has_mask = torch.ones(k, device=self.device)
            mask_input = mask_input.float()
        low_res, iou = self.model.decode_prompts(
            self.features, coords.to(self.device), labels.to(self.device), mask_input, has_mask
        )
        low_res, iou = self.model.select_masks(low_res, iou, multimask_output)
        if not multimask_output and low_res.shape[1] > 1:
            low_res, iou = pick_best_mask(low_res, iou)
        masks = self.model.postprocess_masks(low_res, self.input_size, self.original_size)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, iou, low_res

    def _validate_batch(self, point_coords, point_labels, boxes, mask_input) -> int:  # noqa: ANN001
        if point_coords is None and boxes is None and mask_input is None:
            raise ValueError("no prompt given: pass points, a box or a mask_input")
        if (point_coords is None) != (point_labels is None):
            raise ValueError("point_coords and point_labels must be given together")
        k = None
        if point_coords is not None:
            if point_coords.dim() != 3 or point_coords.shape[-1] != 2:
                raise ValueError(f"point_coords must have shape [K, N, 2], got {list(point_coords.shape)}")
            if tuple(point_labels.shape) != tuple(point_coords.shape[:2]):
                raise ValueError(f"point_labels must have shape {list(point_coords.shape[:2])}, got {list(point_labels.shape)}")
            check_finite("point_coords", point_coords)
            check_labels(point_labels, MODEL_LABELS[self.family], self.family)
            k = point_coords.shape[0]
        if boxes is not None:
            check_boxes(boxes)
            if k is not None and boxes.shape[0] != k:
                raise ValueError(f"boxes has {boxes.shape[0]} rows but point_coords has {k} prompts")
            k = boxes.shape[0]
        if mask_input is not None:
            if not self.config.supports_mask_input:
                raise ValueError(f"{self.config.name} does not accept mask_input (no mask prompt in this model)")
            e4 = 4 * self.config.embedding_size
            if mask_input.dim() != 4 or tuple(mask_input.shape[1:]) != (1, e4, e4):
                raise ValueError(f"mask_input must have shape [K, 1, {e4}, {e4}], got {list(mask_input.shape)}")
            check_finite("mask_input", mask_input)
            if k is not None and mask_input.shape[0] != k:
                raise ValueError(f"mask_input has {mask_input.shape[0]} rows but the prompts have {k}")
            k = mask_input.shape[0]
        if self.family == "efficientsam" and point_coords is None and boxes is None:
            raise ValueError("EfficientSAM needs at least one point or a box")
        return int(k)
