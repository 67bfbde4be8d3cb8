"""ExecuTorch (.pte) backend: the Python runtime of the executorch wheel (`executorch.runtime`), XNNPACK delegate.

The runtime module links libtorch and hands tensors over as torch tensors, so it and torch are imported
through importlib only when a `.pte` model is opened (`import mobile_runtime` loads neither).

A model is called the way an app calls it: one method by name (`forward` for the encoder,
`decoder_k1` / `decoder_k16` for the decoder), inputs by position. ExecuTorch tensors have no names;
this backend names them `input_<i>` / `output_<i>` and the manifest maps those to their meanings
(`logical_name`), as for LiteRT's `args_<i>`.

Threads: XNNPACK's thread pool is one per process (`_unsafe_reset_threadpool`), and resizing it under
live methods hangs them (ExecuTorch 1.5.1: a method that had run, then the pool resized, hung in its
next `execute`; a resize between `load_method` and the first `execute` has hung too). So the pool is
sized once, before the first method of the process is loaded; a later model asking for another size
is refused, naming the size in use.
"""

from __future__ import annotations

import importlib
import threading
from pathlib import Path
from types import ModuleType

import numpy as np

from .base import check_inputs

RUNTIME_VERSION = "1.5.1"  # the executorch the packages are exported and checked with
DEFAULT_METHOD = "forward"
INSTALL_HINT = "pip install 'tinysam-mobile[executorch]'"
# ExecuTorch ScalarType codes -> numpy dtypes (executorch/runtime/core/portable_type/scalar_type.h)
_DTYPES = {6: np.float32, 5: np.float16, 7: np.float64, 4: np.int64, 3: np.int32, 1: np.int8, 0: np.uint8,
           11: np.bool_}

_POOL_LOCK = threading.Lock()
_POOL: dict[str, int] = {}  # "threads": the pool size set by this process


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ValueError(f"opening a .pte model needs the ExecuTorch runtime ({INSTALL_HINT}): {exc}") from None


def _runtime() -> tuple[ModuleType, ModuleType, ModuleType]:
    """(executorch.runtime, its pybindings module, torch), imported on first use."""
    torch = _import("torch")
    portable = _import("executorch.extension.pybindings.portable_lib")
    return _import("executorch.runtime"), portable, torch


def _set_threads(portable: ModuleType, num_threads: int) -> None:
    """Size XNNPACK's pool once per process, before any method is loaded."""
    with _POOL_LOCK:
        used = _POOL.get("threads")
        if used is None:
            portable._unsafe_reset_threadpool(int(num_threads))
            _POOL["threads"] = int(num_threads)
        elif used != num_threads:
            raise ValueError(f"the ExecuTorch thread pool of this process has {used} threads; models of one "
                             f"process share it, so open this one with num_threads={used}")


def pool_threads() -> int | None:
    """The thread-pool size set by this process (None before the first .pte model is opened)."""
    return _POOL.get("threads")


class ExecuTorchModel:
    """One method of a .pte program. `run` is serialized by a lock (methods share planned memory)."""

    def __init__(self, path: str | Path, num_threads: int = 2, signature: str | None = None) -> None:
        rt, portable, self._torch = _runtime()
        _set_threads(portable, num_threads)
        path = Path(path)
        try:
            self._program = rt.Runtime.get().load_program(str(path))
        except Exception as exc:  # the runtime raises RuntimeError variants
            raise ValueError(f"cannot load ExecuTorch program {path}: {str(exc).splitlines()[0]}") from None
        names = sorted(self._program.method_names)
        if signature is None:
            signature = names[0] if len(names) == 1 else DEFAULT_METHOD
        if signature not in names:
            raise ValueError(f"ExecuTorch program {path.name} has no method {signature!r}; it has {names}")
        self.method_name = signature
        try:
            self._method = self._program.load_method(signature)
        except Exception as exc:
            raise ValueError(f"cannot load method {signature!r} of {path}: {str(exc).splitlines()[0]}") from None
        meta = self._method.metadata
        ins = [meta.input_tensor_meta(i) for i in range(meta.num_inputs())]
        outs = [meta.output_tensor_meta(i) for i in range(meta.num_outputs())]
        self.input_names = [f"input_{i}" for i in range(len(ins))]
        self.output_names = [f"output_{i}" for i in range(len(outs))]
        self.input_shapes = {n: tuple(int(d) for d in m.sizes()) for n, m in zip(self.input_names, ins)}
        self._in_dtypes = [_DTYPES.get(int(m.dtype()), np.float32) for m in ins]
        self._lock = threading.Lock()

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Execute the method once with the inputs in declared order; float16 outputs come back as float32."""
        check_inputs(self, inputs)
        torch = self._torch
        args = [torch.from_numpy(np.ascontiguousarray(np.asarray(inputs[n]).astype(dt, copy=False)))
                for n, dt in zip(self.input_names, self._in_dtypes)]
        with self._lock:
            outs = self._method.execute(args)
            arrays = [np.array(o.detach().numpy()) for o in outs]  # copied: the method reuses its buffers
        return {n: (a.astype(np.float32) if a.dtype == np.float16 else a) for n, a in zip(self.output_names, arrays)}


def open_executorch(path: str | Path, num_threads: int = 2, signature: str | None = None) -> ExecuTorchModel:
    """Open one method of a .pte program (None: its only method, else `forward`)."""
    return ExecuTorchModel(path, num_threads=num_threads, signature=signature)
