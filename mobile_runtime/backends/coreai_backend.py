"""Apple Core AI backend: runs a `.aimodel` in coreai-core's own runtime (Linux x86_64 and macOS).

`coreai` is imported only when a Core AI model is opened (it needs no torch). A saved `.aimodel` holds
the source program only (`main.mlirb`); the runtime needs it lowered first (`.aimodelx` with
`main-universal.odix`). The supported path, `AIModelAsset.executable()`, lowers into a temporary
directory on every open; this backend lowers each asset ONCE into a cache it owns
(`$TINYSAM_COREAI_CACHE`, default `~/.cache/tinysam-mobile/coreai/<sha256 of the asset>.aimodelx`), and
loads it with the public `AIModel.load`. Lowering a kept directory has no public call, so it goes
through the private `AIModelAsset._write_odix`, used in ONE place (`lower_asset`), checked by
`tests/mobile_runtime/test_rt_coreai_private_api.py`. If that private method disappears, the backend
says so once and falls back to holding `executable()` open (lowered again on every open).

The Core AI API is async; `CoreAIModel.run` is synchronous: calls go to one event loop on a private
thread, serialized by a lock. On Linux the runtime is CPU-only and single-threaded: a correctness
check, not a speed figure (`SpecializationOptions` are macOS-only).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import numpy as np

from . import check_inputs

CACHE_ENV = "TINYSAM_COREAI_CACHE"
ODIX_FILE = "main-universal.odix"
_log = logging.getLogger(__name__)
_LOCK = threading.Lock()
_LOADED: dict[str, Any] = {}  # asset sha256 -> loaded AIModel (shared by the functions of one asset)
_HELD: list[Any] = []  # executable() contexts kept open by the fallback path
_LOOP: asyncio.AbstractEventLoop | None = None


class PrivateApiChanged(RuntimeError):
    """coreai-core no longer has the private lowering call this backend caches with."""


def _runtime():  # noqa: ANN202
    try:
        return importlib.import_module("coreai.runtime"), importlib.import_module("coreai.authoring")
    except ImportError as exc:
        raise ValueError("Core AI packages need coreai-core (pip install -r requirements.txt); "
                         f"import failed: {exc}") from None


def _run(coro: Coroutine) -> Any:
    """Run `coro` on the backend's event loop thread and wait for its result."""
    global _LOOP
    if _LOOP is None:
        _LOOP = asyncio.new_event_loop()
        threading.Thread(target=_LOOP.run_forever, name="coreai-loop", daemon=True).start()
    return asyncio.run_coroutine_threadsafe(coro, _LOOP).result()


def cache_root() -> Path:
    """Where lowered assets are kept (`$TINYSAM_COREAI_CACHE` or ~/.cache/tinysam-mobile/coreai)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "tinysam-mobile" / "coreai"


def asset_key(path: Path) -> str:
    """sha256 of every file of the asset (and the coreai-core version that lowers it)."""
    from importlib.metadata import version

    h = hashlib.sha256(version("coreai-core").encode())
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(p.relative_to(path).as_posix().encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def lower_asset(asset: Any, out_dir: Path) -> None:
    """PRIVATE coreai-core API, the only use of it: lower `asset` into `out_dir` (writes ODIX_FILE).

    `AIModelAsset.executable()` does exactly this into a temporary directory it deletes on exit; no
    public call keeps the result.
    """
    write = getattr(asset, "_write_odix", None)
    if write is None:
        raise PrivateApiChanged("coreai-core has no AIModelAsset._write_odix any more")
    write(Path(out_dir))
    if not (Path(out_dir) / ODIX_FILE).is_file():
        raise PrivateApiChanged(f"AIModelAsset._write_odix wrote no {ODIX_FILE}")


def compiled_dir(path: Path, key: str) -> Path:
    """The cached lowered form of the asset at `path`, lowering it first if it is not there."""
    _, authoring = _runtime()
    root = cache_root()
    final = root / f"{key}.aimodelx"
    if (final / ODIX_FILE).is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".lowering-", suffix=".aimodelx", dir=root))
    try:
        lower_asset(authoring.AIModelAsset.load(path), tmp)
        try:
            os.rename(tmp, final)
        except OSError:  # another process cached it first
            if not (final / ODIX_FILE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


async def _hold_executable(path: Path) -> Any:
    _, authoring = _runtime()
    ctx = authoring.AIModelAsset.load(path).executable()
    model = await ctx.__aenter__()
    _HELD.append(ctx)
    return model


def load_model(path: Path) -> Any:
    """The loaded AIModel of the asset at `path`, lowered once into the cache, loaded once per process."""
    rt, _ = _runtime()
    key = asset_key(path)
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
        try:
            model = _run(rt.AIModel.load(compiled_dir(path, key)))
        except PrivateApiChanged as exc:
            _log.warning("%s; lowering through AIModelAsset.executable() on every open instead", exc)
            model = _run(_hold_executable(path))
        _LOADED[key] = model
        return model


class CoreAIModel:
    """One function of a Core AI asset with the `Model` interface (numpy in, numpy out).

    Inputs are cast to the dtype the function declares (fp16 packages take float16); outputs come
    back as float32. `signature` names the function (None: the only one, or `main`).
    """

    def __init__(self, path: str | Path, signature: str | None = None) -> None:
        path = Path(path)
        try:
            model = load_model(path)
        except (ValueError, PrivateApiChanged):
            raise
        except Exception as exc:  # the runtime raises RuntimeError variants with multi-line texts
            raise ValueError(f"cannot load Core AI model {path}: {str(exc).splitlines()[0]}") from None
        names = list(model.function_names)
        if signature is None:
            signature = names[0] if len(names) == 1 else "main"
        if signature not in names:
            raise ValueError(f"Core AI model {path.name} has no function {signature!r}; "
                             f"available functions: {', '.join(sorted(names))}")
        self.function = signature
        self._fn = model.load_function(signature)
        desc = self._fn.desc
        self.input_names = list(desc.input_names)
        self.output_names = list(desc.output_names)
        self._dtypes = {n: _numpy_dtype(desc.input_descriptor(n).dtype) for n in self.input_names}
        self.input_shapes = {n: tuple(desc.input_descriptor(n).shape) for n in self.input_names}
        self._lock = threading.Lock()
        self._rt = _runtime()[0]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the function once (synchronously)."""
        check_inputs(self, inputs)
        feeds = {k: self._rt.NDArray(np.ascontiguousarray(np.asarray(v).astype(self._dtypes[k], copy=False)))
                 for k, v in inputs.items()}
        with self._lock:
            out = _run(self._fn(feeds))
        return {k: np.asarray(out[k].numpy(), dtype=np.float32) for k in self.output_names}


def _numpy_dtype(name: str) -> np.dtype:
    key = str(name).lower().replace("datatype.", "")
    table = {"float32": np.float32, "float16": np.float16, "int32": np.int32, "int8": np.int8, "uint8": np.uint8}
    if key not in table:
        raise ValueError(f"Core AI input dtype {name!r} is not supported; known: {', '.join(table)}")
    return np.dtype(table[key])


def open_coreai(path: str | Path, num_threads: int = 1, signature: str | None = None) -> CoreAIModel:  # noqa: ARG001
    """Open one function of a Core AI asset (`num_threads` is ignored: the Linux runtime is single-threaded)."""
    return CoreAIModel(path, signature=signature)
