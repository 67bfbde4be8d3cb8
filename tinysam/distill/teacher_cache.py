"""Teacher image embeddings, computed once and kept on disk as memory-mapped ``.npy`` shards.

Layout: ``<root>/<teacher>-<sha256[:16]>-s<image_size>/`` with ``index.json`` (teacher name, full
checkpoint sha256, image size, dtype, embedding shape, and ``entries``: image id -> [shard, row])
and ``shard_NNNN.npy`` files of shape [n, 256, E, E]. Entries are keyed by checkpoint sha256 +
image id + image size, so a different checkpoint or size never reads a stale embedding; new images
go to a new shard. Several processes fill one shard together (disjoint rows, computed in batches on
each rank's device), rank 0 writes the index last, so an interrupted build leaves no half-written
entry behind. Shards are plain ``.npy`` arrays read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from tinysam.checkpoint import file_sha256

from .data import Record

__all__ = ["TeacherCache", "file_sha256"]


class TeacherCache:
    """Disk cache of teacher embeddings for one (teacher checkpoint, image size)."""

    def __init__(
        self, root: str | Path, teacher: str, checkpoint_sha256: str, image_size: int, dtype: str = "float16"
    ) -> None:
        if len(checkpoint_sha256) != 64:
            raise ValueError(f"checkpoint_sha256 must be 64 hex digits, got {checkpoint_sha256!r}")
        self.teacher = teacher
        self.sha256 = checkpoint_sha256
        self.image_size = int(image_size)
        self.dtype = np.dtype(dtype)
        self.dir = Path(root) / f"{teacher}-{checkpoint_sha256[:16]}-s{self.image_size}"
        self._maps: dict[str, np.ndarray] = {}
        self._index: dict | None = None

    @property
    def index_path(self) -> Path:
        """Path of index.json."""
        return self.dir / "index.json"

    def read_index(self) -> dict:
        """The index (empty entries if none yet); raises ValueError if it belongs to another key."""
        if not self.index_path.exists():
            return {"entries": {}}
        index = json.loads(self.index_path.read_text())
        for key, want in (("checkpoint_sha256", self.sha256), ("image_size", self.image_size)):
            if index.get(key) != want:
                raise ValueError(f"teacher cache {self.dir} has {key}={index.get(key)!r}, expected {want!r}")
        return index

    def missing(self, records: Sequence[Record]) -> list[Record]:
        """Records whose embedding is not cached yet."""
        entries = self.read_index()["entries"]
        return [r for r in records if r.image_id not in entries]

    def build(
        self,
        records: Sequence[Record],
        embed: Callable[[Record], torch.Tensor] | None = None,
        rank: int = 0,
        world: int = 1,
        barrier: Callable[[], None] | None = None,
        progress: bool = False,
        embed_batch: Callable[[list[Record]], torch.Tensor] | None = None,
        batch_size: int = 1,
    ) -> int:
        """Compute and store the embeddings of uncached ``records``; returns how many were added.

        ``embed(record) -> [1, 256, E, E]`` or ``embed_batch(records) -> [n, 256, E, E]`` (then up to
        ``batch_size`` records per call). With several processes, every rank calls this with the same
        records; rows are split round-robin and ``barrier`` synchronizes the steps.
        """
        if (embed is None) == (embed_batch is None):
            raise ValueError("pass exactly one of embed and embed_batch")
        if embed_batch is None:
            def embed_batch(recs: list[Record]) -> torch.Tensor:
                return torch.cat([embed(r) for r in recs])
        sync = barrier or (lambda: None)
        index = self.read_index()
        todo = [r for r in records if r.image_id not in index["entries"]]
        todo = list({r.image_id: r for r in todo}.values())
        sync()
        if not todo:
            return 0
        shard = f"shard_{len({v[0] for v in index['entries'].values()}):04d}.npy"
        path = self.dir / shard
        first = embed_batch(todo[:1]) if rank == 0 else None
        if rank == 0:
            self.dir.mkdir(parents=True, exist_ok=True)
            shape = (len(todo), *first.shape[1:])
            arr = np.lib.format.open_memmap(path, mode="w+", dtype=self.dtype, shape=shape)
            arr[0] = first[0].float().cpu().numpy().astype(self.dtype)
            arr.flush()
            del arr
        sync()
        arr = np.load(path, mmap_mode="r+", allow_pickle=False)
        rows = [i for i in range(1, len(todo)) if i % world == rank]
        chunks = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
        it = chunks
        if progress and rank == 0:
            from tqdm import tqdm

            it = tqdm(chunks, desc="teacher embeddings", leave=False)
        for chunk in it:
            embs = embed_batch([todo[i] for i in chunk]).float().cpu().numpy().astype(self.dtype)
            for i, e in zip(chunk, embs):
                arr[i] = e
        arr.flush()
        del arr
        sync()
        if rank == 0:
            index.update(
                teacher=self.teacher,
                checkpoint_sha256=self.sha256,
                image_size=self.image_size,
                dtype=self.dtype.name,
            )
            for row, rec in enumerate(todo):
                index["entries"][rec.image_id] = [shard, row]
            tmp = self.index_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(index))
            os.replace(tmp, self.index_path)
        sync()
        self._maps.clear()
        self._index = None
        return len(todo)

    def get(self, image_id: str, dtype: torch.dtype | None = torch.float32) -> torch.Tensor:
        """The cached embedding [1, 256, E, E] as ``dtype`` (None: the stored dtype); KeyError if missing."""
        if self._index is None:
            self._index = self.read_index()
        index = self._index
        if image_id not in index["entries"]:
            raise KeyError(f"image {image_id!r} is not in teacher cache {self.dir}")
        shard, row = index["entries"][image_id]
        if shard not in self._maps:
            self._maps[shard] = np.load(self.dir / shard, mmap_mode="r", allow_pickle=False)
        out = torch.from_numpy(np.array(self._maps[shard][row]))[None]
        return out if dtype is None else out.to(dtype)
