"""Segment-everything on a `Session`: SAM's dense grid mode and TinySAM's hierarchical mode.

The steps mirror the reference generators (grid, batches of single positive points, 3 multimask
outputs each, IoU filter, stability filter on full-resolution logits, high-confidence coverage map,
stage-2 sampling, one box NMS, RLE, records). Work is skipped only where it cannot change the answer:

- masks whose predicted IoU fails `pred_iou_thresh` are never upsampled;
- with SAM's bilinear post-processing (non-negative weights summing to 1) a full-resolution pixel is
  a convex combination of low-res pixels, so pixels whose low-res neighbourhood is entirely below the
  lowest threshold used (`mask_threshold - stability_score_offset`) stay below it: only the window
  around the low-res pixels above it is upsampled (bicubic post-processing upsamples everything);
- RLEs are encoded only for masks that survive NMS.

The surviving masks of a batch are upsampled as one stack over their union window (cached
separable matrices, float32 `my @ X @ mx^T`, BLAS on one thread), and stability scores,
thresholds, the coverage map and boxes are computed on the stack.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from . import amg
from . import prompts as P
from . import rle as R
from . import transforms as T
from .session import Session

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
_MARGIN = 1e-3  # low-res values this far below the lowest threshold cannot reach it after interpolation
_MAX_ELEMENTS = 1 << 24  # full-resolution float32 logits held at once (64 MB)
_FIELDS = ("windows", "boxes", "iou", "points", "stability")


def _support(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last non-zero column of each row of a banded weight matrix."""
    nz = m != 0
    first = np.argmax(nz, axis=1)
    last = m.shape[1] - 1 - np.argmax(nz[:, ::-1], axis=1)
    return first, last


class _Upsampler:
    """Low-res logits -> full-resolution logits for a stack of masks, only inside the window that matters.

    The two separable interpolation matrices depend only on the sizes (cached per image size); a
    stack is upsampled as `my @ X @ mx^T` in float32 over the union window of its masks.
    """

    def __init__(self, session: Session, low: float, max_elements: int = _MAX_ELEMENTS) -> None:
        self.size = session.original_size
        self.my, self.mx = T.postprocess_matrices(session.low_res_size, session.image_size, session.input_size,
                                                  session.original_size, session.mask_postprocess)
        self.windowed = session.mask_postprocess == "sam"
        self.low = low - _MARGIN
        self.ry = _support(self.my)
        self.rx = _support(self.mx)
        self.chunk = max(1, max_elements // (self.size[0] * self.size[1]))  # masks per stack

    @staticmethod
    def _range(support, a: int, b: int) -> tuple[int, int, int, int]:
        first, last = support
        out0 = int(np.searchsorted(last, a, side="left"))
        out1 = int(np.searchsorted(first, b, side="right"))
        if out1 <= out0:
            return 0, 0, 0, 0
        return out0, out1, int(first[out0]), int(last[out1 - 1]) + 1

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, int, int]:
        """(..., L, L) -> (logits window (..., h, w), y0, x0): outside the window every mask of the
        stack is below the lowest threshold."""
        if not self.windowed:
            return T.resize_matrices(x, self.my, self.mx), 0, 0
        empty = np.zeros(x.shape[:-2] + (0, 0), np.float32), 0, 0
        above = x > self.low
        rows = np.flatnonzero(above.any(axis=-1).reshape(-1, x.shape[-2]).any(axis=0))
        if rows.size == 0:
            return empty
        cols = np.flatnonzero(above.any(axis=-2).reshape(-1, x.shape[-1]).any(axis=0))
        y0, y1, a0, a1 = self._range(self.ry, rows[0], rows[-1])
        x0, x1, c0, c1 = self._range(self.rx, cols[0], cols[-1])
        if y1 <= y0 or x1 <= x0:  # only cropped-away (padding) pixels are above the threshold
            return empty
        win = T.resize_matrices(x[..., a0:a1, c0:c1], self.my[y0:y1, a0:a1], self.mx[x0:x1, c0:c1])
        return win, y0, x0


class EverythingGenerator:
    """Automatic mask generation over an opened package (see module docstring)."""

    def __init__(self, session: Session, mode: str = "hierarchical", points_per_side: int = 32,
                 points_per_batch: int | None = None, pred_iou_thresh: float = 0.88,
                 stability_score_thresh: float = 0.95, stability_score_offset: float = 1.0,
                 box_nms_thresh: float = 0.7, high_score_thresh: float = 8.5, min_mask_region_area: int = 0,
                 output_mode: str = "binary_mask") -> None:
        if mode not in ("hierarchical", "dense"):
            raise ValueError(f"mode must be 'hierarchical' or 'dense', got {mode!r}")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {', '.join(OUTPUT_MODES)}, got {output_mode!r}")
        min_side = 4 if mode == "hierarchical" else 1
        if points_per_side < min_side:
            raise ValueError(f"points_per_side must be at least {min_side} in {mode} mode, got {points_per_side}")
        if points_per_batch is not None and points_per_batch < 1:
            raise ValueError(f"points_per_batch must be positive, got {points_per_batch}")
        self.session = session
        self.mode = mode
        self.points_per_side = points_per_side
        self.points_per_batch = points_per_batch or max(session.fast_batch_sizes or session.batch_sizes)
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.high_score_thresh = high_score_thresh
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.crop_nms_thresh = 0.7  # reference default, used by the small-region re-NMS
        self.last_stats: dict[str, Any] = {}

    # ---- one batch of points -----------------------------------------------------------------
    def _prompts(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.session
        pts = T.apply_coords(points, s.original_size, s.image_size, s.resize).astype(np.float32)
        one = np.ones((1,), np.int64)
        laid = [P.layout_prompt(p[None], one, None, s.family, s.slots, s.max_points) for p in pts]
        return np.stack([c for c, _ in laid]), np.stack([lab for _, lab in laid])

    def _process_batch(self, points: np.ndarray, up: _Upsampler, covered: np.ndarray | None) -> dict[str, list]:
        s = self.session
        coords, labels = self._prompts(points)
        low, iou = s.decode(coords, labels)
        low, iou = low[:, 1:], iou[:, 1:]  # multimask outputs, as the reference generators ask for
        m = low.shape[1]
        low = low.reshape((-1,) + low.shape[2:])
        iou = iou.reshape(-1)
        pts = np.repeat(points, m, axis=0)
        keep = np.flatnonzero(iou > self.pred_iou_thresh) if self.pred_iou_thresh > 0 else np.arange(len(iou))
        out: dict[str, list] = {k: [] for k in _FIELDS}
        self._upsampled += len(keep)
        for start in range(0, len(keep), up.chunk):  # masks failing the IoU filter are never upsampled
            idx = keep[start : start + up.chunk]
            self._filter_stack(low[idx], iou[idx], pts[idx], up, covered, out)
        return out

    def _filter_stack(self, low: np.ndarray, iou: np.ndarray, pts: np.ndarray, up: _Upsampler,
                      covered: np.ndarray | None, out: dict[str, list]) -> None:
        """Upsample a stack once; stability filter, coverage, boxes and windows on the whole stack."""
        thr, off = self.session.mask_threshold, self.stability_score_offset
        h, w = self.session.original_size
        win, y0, x0 = up(low)
        stab = amg.stability_from_counts(np.count_nonzero(win > thr + off, axis=(1, 2)),
                                         np.count_nonzero(win > thr - off, axis=(1, 2)))
        ok = np.flatnonzero(stab >= self.stability_score_thresh) if self.stability_score_thresh > 0 \
            else np.arange(len(stab))
        if ok.size == 0:
            return
        win = win[ok] if ok.size < len(win) else win
        binary = win > thr
        if covered is not None and win.size:
            covered[y0 : y0 + win.shape[1], x0 : x0 + win.shape[2]] |= (win > self.high_score_thresh).any(axis=0)
        has = binary.any(axis=(1, 2)) if binary.size else np.zeros(len(ok), bool)
        boxes = np.zeros((len(ok), 4), np.int64)
        if has.any():
            boxes[has] = amg.mask_to_box(binary[has]) + np.array([x0, y0, x0, y0])
        near = amg.is_box_near_crop_edge(boxes, [0, 0, w, h], [0, 0, w, h])
        for j in np.flatnonzero(~near):
            bx0, by0, bx1, by1 = (int(v) for v in boxes[j])
            window = (binary[j, by0 - y0 : by1 - y0 + 1, bx0 - x0 : bx1 - x0 + 1].copy(), by0, bx0) if has[j] \
                else (np.zeros((0, 0), bool), 0, 0)
            out["windows"].append(window)
            out["boxes"].append(boxes[j])
            out["iou"].append(np.float32(iou[ok[j]]))
            out["points"].append(pts[ok[j]])
            out["stability"].append(np.float32(stab[ok[j]]))

    def _run_grid(self, grid: np.ndarray, up: _Upsampler, covered: np.ndarray | None) -> dict[str, list]:
        h, w = self.session.original_size
        points = grid * np.array([[w, h]], dtype=np.float64)
        data: dict[str, list] = {k: [] for k in _FIELDS}
        for start in range(0, len(points), self.points_per_batch):
            part = self._process_batch(points[start : start + self.points_per_batch], up, covered)
            for k in data:
                data[k].extend(part[k])
        return data

    # ---- public ------------------------------------------------------------------------------
    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """Masks for the whole image as SAM-format records (sorted by NMS order)."""
        t0 = time.perf_counter()
        s = self.session
        with s.lock:
            s.set_image(image)
            t_enc = time.perf_counter()
            calls0, prompts0, dec0, prep0 = s.decoder_calls, s.prompts_decoded, s.decoder_seconds, s.prep_seconds
            self._nms_seconds = self._rle_seconds = 0.0
            self._upsampled = 0
            h, w = s.original_size
            lowest = min(s.mask_threshold - self.stability_score_offset, s.mask_threshold)
            up = _Upsampler(s, lowest if self.mode == "dense" else min(lowest, self.high_score_thresh))
            stage2_points = 0
            if self.mode == "dense":
                data = self._run_grid(amg.build_point_grid(self.points_per_side), up, None)
            else:
                grid1 = amg.build_point_grid(self.points_per_side // 4)
                covered = np.zeros((h, w), dtype=bool)
                data1 = self._run_grid(grid1, up, covered)
                grid2 = amg.hierarchical_points(grid1, covered.T, (h, w), self.points_per_side)
                stage2_points = len(grid2)
                data = self._run_grid(grid2, up, None) if len(grid2) else {k: [] for k in data1}
                for k in data:
                    data[k].extend(data1[k])
            t_grid = time.perf_counter()
            records = self._post_process(data, (h, w))
            t_end = time.perf_counter()
            decoder_s, prep_s = s.decoder_seconds - dec0, s.prep_seconds - prep0
            self.last_stats = {
                "mode": self.mode,
                "split_decoder": s.has_split_decoder and s.use_split_decoder,
                "prompts_decoded": s.prompts_decoded - prompts0,
                "decoder_calls": s.decoder_calls - calls0,
                "decoder_seconds": decoder_s,
                "prep_seconds": prep_s,
                "encoder_seconds": t_enc - t0,
                # upsampling, stability filter, coverage map and boxes: the grid time outside the decoder
                "postprocess_seconds": (t_grid - t_enc) - decoder_s - prep_s + (t_end - t_grid - self._nms_seconds
                                                                                - self._rle_seconds),
                "nms_seconds": self._nms_seconds,
                "rle_seconds": self._rle_seconds,
                "stage2_points": stage2_points,
                "masks_upsampled": self._upsampled,
                "masks": len(records),
                "seconds": time.perf_counter() - t0,
            }
            return records

    def _post_process(self, data: dict[str, list], size: tuple[int, int]) -> list[dict[str, Any]]:
        n = len(data["iou"])
        t0 = time.perf_counter()
        boxes = np.asarray(data["boxes"], np.int64).reshape(n, 4)
        keep = amg.nms(boxes, np.asarray(data["iou"], np.float32), self.box_nms_thresh)
        self._nms_seconds += time.perf_counter() - t0
        items = [dict(window=data["windows"][i], box=boxes[i], iou=data["iou"][i], point=data["points"][i],
                      stability=data["stability"][i], rle=None) for i in keep]
        if self.min_mask_region_area > 0 and items:
            items = self._remove_small_regions(items, size)
        records = []
        for it in items:
            t0 = time.perf_counter()
            rle = it["rle"] or R.window_to_rle(*it["window"], size)
            if self.output_mode == "binary_mask":
                seg: Any = R.rle_to_mask(rle)
            elif self.output_mode == "coco_rle":
                seg = R.coco_encode_rle(rle)
            else:
                seg = rle
            self._rle_seconds += time.perf_counter() - t0
            x0, y0, x1, y1 = (int(v) for v in it["box"])
            rec = {
                "segmentation": seg,
                "area": R.area_from_rle(rle),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "predicted_iou": float(it["iou"]),
                "point_coords": [[float(v) for v in it["point"]]],
                "stability_score": float(it["stability"]),
            }
            if self.mode == "dense":
                rec["crop_box"] = [0, 0, size[1], size[0]]
            records.append(rec)
        return records

    def _remove_small_regions(self, items: list[dict], size: tuple[int, int]) -> list[dict]:
        masks, scores = [], []
        for it in items:
            full = R.rle_to_mask(R.window_to_rle(*it["window"], size))
            full, changed_holes = amg.remove_small_regions(full, self.min_mask_region_area, "holes")
            full, changed_islands = amg.remove_small_regions(full, self.min_mask_region_area, "islands")
            masks.append(full)
            scores.append(float(not (changed_holes or changed_islands)))
        boxes = amg.mask_to_box(np.stack(masks))
        keep = amg.nms(boxes, np.asarray(scores, np.float32), max(self.box_nms_thresh, self.crop_nms_thresh))
        out = []
        for i in keep:
            it = dict(items[i])
            if scores[i] == 0.0:
                it["rle"] = R.mask_to_rle(masks[i])
                it["box"] = boxes[i]
            out.append(it)
        return out
