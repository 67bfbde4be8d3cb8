"""`load_package` and `Session`: the predictor the phone app runs, in numpy over the exported models.

Thread safety: every public call takes the session's lock, so calls from several threads are
serialized and each `predict` runs entirely against one image. `set_image` followed by `predict` is
two calls: a thread that needs both atomically should hold `session.lock` around them.
"""

from __future__ import annotations

import tempfile
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from . import prompts as P
from . import transforms as T
from .backends import Model, input_shape, open_model
from .manifest import PackageError, is_zip, load_manifest, package_root
from .package_format import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    EMPTY_SLOT,
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    FAST_DECODER_INPUTS,
    MASK_INPUTS,
    PREP_INPUTS,
    PREP_OUTPUTS,
    Manifest,
)

CALL_OVERHEAD = 2.0  # cost of one decoder call, in prompts, for batch planning


@lru_cache(maxsize=256)
def plan_batches(k: int, variants: tuple[int, ...], overhead: float = CALL_OVERHEAD,
                 costs: tuple[tuple[int, float], ...] | None = None) -> tuple[int, ...]:
    """Decoder batch sizes (from `variants`) covering k prompts at the lowest cost: `costs` ((K, cost of one
    call), e.g. measured ms) when given, else padded slots + `overhead` per call; the last call may be padded."""
    if k <= 0:
        return ()
    sizes = sorted(set(variants))
    call_cost = dict(costs) if costs else {}
    best: list[tuple[float, tuple[int, ...]]] = [(0.0, ())]
    for n in range(1, k + 1):
        options = []
        for v in sizes:
            prev_cost, prev_plan = best[max(n - v, 0)]
            options.append((prev_cost + call_cost.get(v, v + overhead), prev_plan + (v,)))
        best.append(min(options))
    return tuple(sorted(best[k][1], reverse=True))


def _bind_names(entries: list, model: Model, logical: tuple[str, ...], side: str,
                optional: tuple[str, ...] = ()) -> dict[str, str]:
    """Logical tensor role -> backend tensor name, from the manifest's ordered entries.

    An entry's role is its `logical_name` (LiteRT: `name` is `args_N`), else `role`, else its
    `name` when that is a logical name, else its position. Roles in `optional` may be missing from
    the model (an exporter drops inputs the graph never reads, e.g. EfficientSAM's mask_input).
    A manifest whose names match none of the model's is bound by position when the counts agree.
    """
    backend_names = model.input_names if side == "inputs" else model.output_names
    names = [e["name"] if isinstance(e, dict) else str(e) for e in entries]
    roles = []
    for i, (e, n) in enumerate(zip(entries, names)):
        role = (e.get("logical_name") or e.get("role")) if isinstance(e, dict) else None
        roles.append(role or (n if n in logical or i >= len(logical) else logical[i]))
    if not any(n in backend_names for n in names) and len(names) == len(backend_names):
        names = list(backend_names)
    bound = {r: n for r, n in zip(roles, names) if n in backend_names}
    absent = [n for r, n in zip(roles, names) if n not in backend_names and r not in optional]
    if absent:
        raise ValueError(f"manifest {side} {absent} are not among the model's {backend_names}")
    missing = [r for r in logical if r not in bound and r not in optional]
    if missing:
        raise ValueError(f"manifest {side} {names} give no tensor for {missing}")
    return bound


class Session:
    """An opened package: set an image once, then decode any number of prompts."""

    def __init__(self, package_dir: str | Path, manifest: dict[str, Any] | Manifest, num_threads: int = 2,
                 _tmp: Any = None) -> None:
        self.package_dir = Path(package_dir)
        self.manifest = manifest.to_dict() if isinstance(manifest, Manifest) else manifest
        self._tmp = _tmp  # keeps an extracted zip alive as long as the session
        self.lock = threading.RLock()
        m = manifest if isinstance(manifest, Manifest) else Manifest.from_dict(manifest)  # validated once
        self.format = m
        pre, post, pr = m.preprocess, m.postprocess, m.prompts
        self.image_size = pre.image_size
        self.resize = pre.resize
        self.pixel_mean = pre.pixel_mean
        self.pixel_std = pre.pixel_std
        self.normalization_in_graph = pre.normalization_in_graph
        self.input_layout = pre.input_layout
        self.mask_postprocess = post.mask_postprocess
        self.mask_threshold = post.mask_threshold
        self.low_res_size = post.low_res_size
        self.family = pr.family
        self.slots = pr.slots
        self.always_multimask = pr.always_multimask
        self.supports_mask_input = pr.supports_mask_input
        self.max_points = pr.max_points
        enc = m.encoder
        self._encoder = open_model(self.package_dir / enc.variants[1].file, m.kind, num_threads,
                                   enc.variants[1].signature)
        self._enc_in = _bind_names(list(enc.inputs) or ["image"], self._encoder, ENCODER_INPUTS, "inputs")
        self._enc_out = _bind_names(list(enc.outputs) or ["image_embeddings"], self._encoder, ENCODER_OUTPUTS,
                                    "outputs")
        dec = m.decoder
        self._decoders: dict[int, tuple[Model, dict[str, str], dict[str, str]]] = {}
        optional = () if self.supports_mask_input else MASK_INPUTS
        for k, variant in dec.variants.items():
            model = open_model(self.package_dir / variant.file, m.kind, num_threads, variant.signature)
            ins = _bind_names(list(dec.inputs), model, DECODER_INPUTS, "inputs", optional)
            outs = _bind_names(list(dec.outputs), model, DECODER_OUTPUTS, "outputs")
            self._check_slots(k, model, ins)
            self._decoders[k] = (model, ins, outs)
        self.batch_sizes = tuple(sorted(self._decoders))
        self._open_split_decoder(m, num_threads)
        self._closed = False
        self.reset_image()
        self.prompts_decoded = 0
        self.decoder_calls = 0
        self.decoder_seconds = 0.0  # wall time inside decoder runs (profiling)
        self.prep_seconds = 0.0  # wall time inside the split decoder's per-image prep runs
        # the split decoder serves the prompts it fits when the package's parity run measured it faster per
        # prompt than the full decoder (or measured nothing); set it to choose (benchmarks compare both)
        timing = (self.manifest.get("parity") or {}).get("decoder_timing") or {}
        self.use_split_decoder = bool(timing.get("prefer_split", True))
        # the split decoder's batches are planned from the measured ms per call when every variant has one
        # (at 1024 px a K=64 call holds 0.5 GB of upscaled features and LiteRT ran K=1 faster per prompt)
        ms = timing.get("ms_per_prompt") or {}
        have = all(f"split_k{v}" in ms for v in self.fast_batch_sizes) and self.fast_batch_sizes
        self._fast_costs = tuple((v, float(ms[f"split_k{v}"]) * v) for v in self.fast_batch_sizes) if have else None

    def _open_split_decoder(self, m: Manifest, num_threads: int) -> None:
        """The split decoder (per-image prep + per-prompt graphs), when the package holds one."""
        self._prep: tuple[Model, dict[str, str], dict[str, str]] | None = None
        self._fast: dict[int, tuple[Model, dict[str, str], dict[str, str]]] = {}
        self.fast_slots = m.fast_slots
        if m.decoder_prep is None or m.decoder_fast is None:
            self.fast_batch_sizes: tuple[int, ...] = ()
            return
        prep = m.decoder_prep.variants[1]
        model = open_model(self.package_dir / prep.file, m.kind, num_threads, prep.signature)
        self._prep = (model, _bind_names(list(m.decoder_prep.inputs), model, PREP_INPUTS, "inputs"),
                      _bind_names(list(m.decoder_prep.outputs), model, PREP_OUTPUTS, "outputs"))
        for k, variant in m.decoder_fast.variants.items():
            model = open_model(self.package_dir / variant.file, m.kind, num_threads, variant.signature)
            self._fast[k] = (model, _bind_names(list(m.decoder_fast.inputs), model, FAST_DECODER_INPUTS, "inputs"),
                             _bind_names(list(m.decoder_fast.outputs), model, DECODER_OUTPUTS, "outputs"))
        self.fast_batch_sizes = tuple(sorted(self._fast))

    @property
    def has_split_decoder(self) -> bool:
        """Whether prompts without mask input that fit in `fast_slots` slots go to the split decoder."""
        return self._prep is not None

    def _check_slots(self, k: int, model: Model, ins: dict[str, str]) -> None:
        """Refuse a manifest whose prompts.slots differs from the decoder's point-slot dimension N."""
        for role in ("point_coords", "point_labels"):
            shape = input_shape(model, ins[role])
            if shape is not None and len(shape) >= 2 and shape[1] is not None and shape[1] != self.slots:
                raise PackageError(f"manifest prompts.slots is {self.slots} but the K={k} decoder's {role} "
                                   f"has {shape[1]} point slots {list(shape)}")

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("session is closed: open the package again with load_package()")

    # ---- image -------------------------------------------------------------------------------
    def reset_image(self) -> None:
        """Forget the current image."""
        with self.lock:
            self._embedding: np.ndarray | None = None
            self._prepped: dict[str, np.ndarray] | None = None  # split-decoder prep outputs of this image
            self.original_size: tuple[int, int] | None = None
            self.input_size: tuple[int, int] | None = None

    def set_image(self, image: np.ndarray) -> None:
        """Encode an RGB uint8 HxWx3 image (one encoder run)."""
        self._check_open()
        image = T.check_image(image)
        x, input_size = T.preprocess_image(image, self.image_size, self.resize, self.pixel_mean,
                                           self.pixel_std, self.normalization_in_graph)
        if self.input_layout == "NHWC":
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        with self.lock:
            self._check_open()
            out = self._encoder.run({self._enc_in["image"]: x})
            self._embedding = np.asarray(out[self._enc_out["image_embeddings"]], dtype=np.float32)
            self._prepped = None
            self.original_size = (int(image.shape[0]), int(image.shape[1]))
            self.input_size = input_size

    @property
    def is_image_set(self) -> bool:
        """True after `set_image`."""
        return self._embedding is not None

    @property
    def image_embedding(self) -> np.ndarray:
        """The current image embedding [1, C, E, E]."""
        self._check_open()
        if self._embedding is None:
            raise RuntimeError("no image set: call set_image(image) first")
        return self._embedding

    def get_image_embedding(self) -> np.ndarray:
        """Same as `image_embedding` (reference predictor's name)."""
        return self.image_embedding

    # ---- decoding ----------------------------------------------------------------------------
    def decode(self, coords: np.ndarray, labels: np.ndarray, mask_input: np.ndarray | None = None,
               has_mask_input: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw decoder over K assembled prompts (input frame, `slots` slots) -> all 4 tokens:
        (low_res [K,4,L,L], iou [K,4]). K is split over the decoder's batch variants."""
        with self.lock:
            emb = self.image_embedding  # raises once closed
            k = coords.shape[0]
            if coords.shape[1:] != (self.slots, 2) or labels.shape != (k, self.slots):
                raise ValueError(f"expected coords [K,{self.slots},2] and labels [K,{self.slots}], "
                                 f"got {coords.shape} and {labels.shape}")
            low_size = self.low_res_size
            if self._fits_split_decoder(labels, has_mask_input):
                return self._decode_split(coords[:, : self.fast_slots], labels[:, : self.fast_slots])
            if mask_input is None:
                mask_input = np.zeros((k, 1, low_size, low_size), np.float32)
                has_mask_input = np.zeros((k,), np.float32)
            lows, ious, start = [], [], 0
            for size in plan_batches(k, self.batch_sizes):
                n = min(size, k - start)
                idx = np.arange(start, start + size).clip(max=start + n - 1)  # pad with the last prompt
                low, iou = self._run_decoder(size, emb, coords[idx], labels[idx], mask_input[idx], has_mask_input[idx])
                lows.append(low[:n])
                ious.append(iou[:n])
                start += n
            self.prompts_decoded += k
            return np.concatenate(lows), np.concatenate(ious)

    def _fits_split_decoder(self, labels: np.ndarray, has_mask_input: np.ndarray | None) -> bool:
        """The split decoder gives the same masks when no prompt uses a mask input and every slot past
        `fast_slots` is empty (empty slots are out of attention)."""
        if self._prep is None or not self.use_split_decoder or (has_mask_input is not None and np.any(has_mask_input != 0)):
            return False
        return bool(np.all(labels[:, self.fast_slots :] == EMPTY_SLOT))

    def _prep_outputs(self) -> dict[str, np.ndarray]:
        """The split decoder's per-image tensors, computed on first use after `set_image` and kept."""
        if self._prepped is None:
            model, ins, outs = self._prep
            t0 = time.perf_counter()
            out = model.run({ins["image_embeddings"]: self.image_embedding})
            self.prep_seconds += time.perf_counter() - t0
            self._prepped = {role: np.asarray(out[name], np.float32) for role, name in outs.items()}
        return self._prepped

    def _decode_split(self, coords: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """K prompts of `fast_slots` slots through the split decoder (batches over its variants)."""
        prepped = self._prep_outputs()
        k = coords.shape[0]
        lows, ious, start = [], [], 0
        for size in plan_batches(k, self.fast_batch_sizes, costs=self._fast_costs):
            n = min(size, k - start)
            idx = np.arange(start, start + size).clip(max=start + n - 1)  # pad with the last prompt
            model, ins, outs = self._fast[size]
            values = dict(prepped, point_coords=coords[idx].astype(np.float32),
                          point_labels=labels[idx].astype(np.float32))
            t0 = time.perf_counter()
            out = model.run({name: values[role] for role, name in ins.items()})
            self.decoder_seconds += time.perf_counter() - t0
            self.decoder_calls += 1
            lows.append(np.asarray(out[outs["low_res_masks"]], np.float32)[:n])
            ious.append(np.asarray(out[outs["iou_predictions"]], np.float32)[:n])
            start += n
        self.prompts_decoded += k
        return np.concatenate(lows), np.concatenate(ious)

    def _run_decoder(self, size, emb, coords, labels, mask_input, has_mask) -> tuple[np.ndarray, np.ndarray]:
        model, ins, outs = self._decoders[size]
        values = {"image_embeddings": emb, "point_coords": coords.astype(np.float32),
                  "point_labels": labels, "mask_input": mask_input.astype(np.float32),
                  "has_mask_input": has_mask.astype(np.float32)}
        t0 = time.perf_counter()
        out = model.run({name: values[role] for role, name in ins.items()})
        self.decoder_seconds += time.perf_counter() - t0
        self.decoder_calls += 1
        return (np.asarray(out[outs["low_res_masks"]], np.float32),
                np.asarray(out[outs["iou_predictions"]], np.float32))

    def select_masks(self, low: np.ndarray, iou: np.ndarray, multimask_output: bool) -> tuple[np.ndarray, np.ndarray]:
        """Pick tokens like the reference: multimask -> 1..3, else 0; TinySAM (always_multimask) ->
        1..3, or the best-IoU one of those 3 when a single mask is asked for."""
        if self.always_multimask or multimask_output:
            low, iou = low[:, 1:], iou[:, 1:]
            if not multimask_output:
                best = np.argmax(iou, axis=1)
                rows = np.arange(len(iou))
                return low[rows, best][:, None], iou[rows, best][:, None]
            return low, iou
        return low[:, :1], iou[:, :1]

    def postprocess(self, low_res: np.ndarray) -> np.ndarray:
        """Low-res logits (..., L, L) -> logits at the original image size."""
        if self.original_size is None:
            raise RuntimeError("no image set: call set_image(image) first")
        return T.postprocess_masks(low_res, self.image_size, self.input_size, self.original_size,
                                   self.mask_postprocess)

    def _prompt_kwargs(self) -> dict[str, Any]:
        return dict(original_size=self.original_size, image_size=self.image_size, resize=self.resize,
                    family=self.family, slots=self.slots, max_points=self.max_points)

    def _mask_batch(self, mask_input, k: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        if mask_input is None:
            return None, None
        if not self.supports_mask_input:
            raise ValueError(f"this model ({self.manifest['model'].get('name')}) does not accept mask_input")
        m = np.asarray(mask_input, dtype=np.float32)
        shape = (k, 1, self.low_res_size, self.low_res_size)
        if m.size != int(np.prod(shape)):
            raise ValueError(f"mask_input must hold {k} low-res masks of {self.low_res_size}x{self.low_res_size}, "
                             f"got shape {m.shape}")
        if not np.all(np.isfinite(m)):
            raise ValueError("mask_input contains NaN or infinite values")
        return m.reshape(shape), np.ones((k,), np.float32)

    def predict(self, points=None, labels=None, box=None, mask_input=None, multimask_output: bool = True,
                return_logits: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One prompt in original-image pixels -> (masks [M,H,W] bool or logits, iou [M], low_res [M,L,L])."""
        with self.lock:
            self._check_open()
            if not self.is_image_set:
                raise RuntimeError("no image set: call set_image(image) first")
            mask, has = self._mask_batch(mask_input, 1)
            coords, labs = P.assemble_prompt(points, labels, box, allow_empty=mask is not None,
                                             **self._prompt_kwargs())
            masks, iou, low = self._finish(coords[None], labs[None], mask, has, multimask_output, return_logits)
            return masks[0], iou[0], low[0]

    def predict_batch(self, points=None, labels=None, boxes=None, mask_input=None, multimask_output: bool = True,
                      return_logits: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """K prompts (points [K,n,2] + labels [K,n] and/or boxes [K,4], original pixels) ->
        (masks [K,M,H,W], iou [K,M], low_res [K,M,L,L])."""
        with self.lock:
            self._check_open()
            if not self.is_image_set:
                raise RuntimeError("no image set: call set_image(image) first")
            coords, labs = P.assemble_prompts(points, labels, boxes, **self._prompt_kwargs())
            mask, has = self._mask_batch(mask_input, coords.shape[0])
            return self._finish(coords, labs, mask, has, multimask_output, return_logits)

    def _finish(self, coords, labs, mask, has, multimask_output, return_logits):
        low, iou = self.decode(coords, labs, mask, has)
        if not (np.isfinite(low).all() and np.isfinite(iou).all()):
            raise ValueError("the model produced NaN/Inf outputs (a corrupt package or non-finite weights); "
                             "its masks would be meaningless")
        low, iou = self.select_masks(low, iou, multimask_output)
        masks = self.postprocess(low)
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks, iou, low

    def close(self) -> None:
        """Release the models (and an extracted zip's temporary directory); later calls raise
        RuntimeError. Closing twice is allowed."""
        with self.lock:
            self._closed = True
            self.reset_image()
            self._encoder = None
            self._decoders = {}
            self._prep, self._fast = None, {}
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None


def load_package(path: str | Path, num_threads: int = 2, verify: bool = True) -> Session:
    """Open a package directory or `.zip` (verified: format version, sha256 of every file, safe paths)."""
    tmp = tempfile.TemporaryDirectory(prefix="tinysam-pkg-") if is_zip(path) else None
    try:
        root = package_root(path, tmp.name if tmp else None)
        manifest = load_manifest(root, verify=verify)
        return Session(root, manifest, num_threads=num_threads, _tmp=tmp)
    except BaseException:
        if tmp is not None:
            tmp.cleanup()
        raise
