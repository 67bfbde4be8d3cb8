"""Evaluate an ML program (MIL) op by op with numpy.

Precision model: every op reads its tensor inputs, upcasts float16 inputs to float32, computes
in float32 (matmul/conv/reductions accumulate in float32), and its results are cast to the dtype
the program declares for each output. In an fp16 program every intermediate is therefore rounded
to float16 after each op, which is where the bulk of fp16 error on device comes from; accumulation
inside one op is float32 (the emulator does not model fp16 accumulators, so device fp16 results can
differ somewhat more).

Memory: `predict` drops each intermediate after the last op that reads it, so a run holds only the
live tensors (a 1024 px SAM ViT-B encoder would otherwise keep every activation, tens of GB).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CoreMLEmulatorError, UnsupportedOpError
from .ops_common import OpCall
from .program import FEATURE_DTYPES, LoadedSpec, TensorSpec, decode_value, load_spec, tensor_spec
from .registry import OPS

_CONTROL_FLOW = {"cond", "while_loop"}


@dataclass(frozen=True)
class _Op:
    """One parsed operation."""

    type: str
    inputs: dict[str, list[tuple[str, Any]]]  # name -> [("var", name) | ("val", value)]
    outputs: tuple[tuple[str, TensorSpec], ...]
    blocks: tuple[Any, ...]
    attrs: dict[str, Any]


def _parse_block(spec: LoadedSpec, block: Any) -> tuple[list[_Op], list[str], list[str]]:
    ops = []
    for op in block.operations:
        inputs = {}
        for name, arg in op.inputs.items():
            inputs[name] = [("var", b.name) if b.WhichOneof("binding") == "name"
                            else ("val", decode_value(spec, b.value)) for b in arg.arguments]
        outputs = tuple((o.name, tensor_spec(o.type)) for o in op.outputs)
        attrs = {k: decode_value(spec, v) for k, v in op.attributes.items()}
        blocks = tuple(_parse_block(spec, b) for b in op.blocks)
        out_name = outputs[0][0] if outputs else "?"
        if op.type not in OPS and op.type not in _CONTROL_FLOW and op.type != "const":
            raise UnsupportedOpError(op.type, out_name)
        ops.append(_Op(op.type, inputs, outputs, blocks, attrs))
    return ops, [i.name for i in block.inputs], list(block.outputs)


def _reads(op: _Op) -> set[str]:
    """Variables `op` reads: its own inputs and, for control flow, everything its nested blocks read
    or return (a superset: names a block defines itself are harmless here)."""
    names = {ref for bindings in op.inputs.values() for kind, ref in bindings if kind == "var"}
    for ops, _, outs in op.blocks:
        names.update(outs)
        for inner in ops:
            names |= _reads(inner)
    return names


def release_schedule(ops: list[_Op], keep: set[str]) -> list[tuple[str, ...]]:
    """Per op index, the variables no later op reads (free to drop once that op has run).

    A variable is dropped after its last reader, or right after the op that makes it when nothing
    reads it; names in `keep` (the function's outputs) are never dropped.
    """
    last: dict[str, int] = {}
    for i, op in enumerate(ops):
        for name in _reads(op):
            last[name] = i
        for name, _ in op.outputs:
            last.setdefault(name, i)
    schedule: list[list[str]] = [[] for _ in ops]
    for name, i in last.items():
        if name not in keep:
            schedule[i].append(name)
    return [tuple(names) for names in schedule]


def _cast_out(value: Any, tspec: TensorSpec) -> Any:
    if tspec.dtype is object or not isinstance(value, (np.ndarray, np.generic, int, float, bool)):
        return value
    return np.asarray(value).astype(tspec.dtype, copy=False)


def _compute_view(value: Any) -> Any:
    """fp16 tensors are computed in float32 (see module docstring)."""
    if isinstance(value, np.ndarray) and value.dtype == np.float16:
        return value.astype(np.float32)
    if isinstance(value, list):
        return [_compute_view(v) for v in value]
    return value


class EmulatedModel:
    """A loaded ``.mlpackage`` whose selected function runs on numpy (see :func:`load_mlpackage`)."""

    def __init__(self, path: str | Path, compute_precision: str | None = None,
                 function_name: str | None = None) -> None:
        if compute_precision not in (None, "fp32", "fp16", "program"):
            raise CoreMLEmulatorError(
                f"compute_precision must be None, 'program', 'fp32' or 'fp16', got {compute_precision!r}")
        self.path = Path(path)
        self.compute_precision = compute_precision
        self._spec = load_spec(self.path, function_name)
        self.function_name: str = self._spec.function_name
        self._ops, _, self._outputs = _parse_block(self._spec, self._spec.block)
        self._inputs = {i.name: tensor_spec(i.type) for i in self._spec.function.inputs}
        desc = self._spec.description
        self.input_names: list[str] = [f.name for f in desc.input]
        self.output_names: list[str] = [f.name for f in desc.output]
        self.input_shapes: dict[str, tuple[int, ...]] = {
            f.name: tuple(int(d) for d in f.type.multiArrayType.shape) for f in desc.input}
        self._out_dtypes = {f.name: FEATURE_DTYPES.get(f.type.multiArrayType.dataType)
                            for f in desc.output}
        self._consts = self._fold_constants()
        self._release = release_schedule(self._ops, set(self._outputs))

    @property
    def op_types(self) -> list[str]:
        """Sorted op types of the main block (nested blocks included)."""
        found: set[str] = set()

        def walk(ops: list[_Op]) -> None:
            for op in ops:
                found.add(op.type)
                for blk in op.blocks:
                    walk(blk[0])
        walk(self._ops)
        return sorted(found)

    def _spec_for(self, tspec: TensorSpec) -> TensorSpec:
        """Apply an override of the float precision (``compute_precision``)."""
        if self.compute_precision in ("fp32", "fp16") and tspec.dtype in (np.float16, np.float32):
            dtype = np.float16 if self.compute_precision == "fp16" else np.float32
            return TensorSpec(dtype, tspec.shape, tspec.mil_dtype)
        return tspec

    def _fold_constants(self) -> dict[str, Any]:
        """Evaluate ``const`` and ``constexpr_*`` ops once, at load time."""
        env: dict[str, Any] = {}
        for op in self._ops:
            if op.type == "const":
                env[op.outputs[0][0]] = _cast_out(op.attrs["val"], self._spec_for(op.outputs[0][1]))
            elif op.type.startswith("constexpr_"):
                self._run_op(op, env)
        return env

    def _resolve(self, op: _Op, env: dict[str, Any]) -> dict[str, Any]:
        args: dict[str, Any] = {}
        for name, bindings in op.inputs.items():
            vals = [env[ref] if kind == "var" else ref for kind, ref in bindings]
            args[name] = vals[0] if len(vals) == 1 and name not in ("values",) else vals
        return args

    def _run_op(self, op: _Op, env: dict[str, Any]) -> None:
        out_name = op.outputs[0][0] if op.outputs else "?"
        try:
            args = self._resolve(op, env)
        except KeyError as exc:
            raise CoreMLEmulatorError(f"op '{op.type}' ({out_name}) reads undefined variable {exc}") from None
        if op.type in _CONTROL_FLOW:
            results = self._control_flow(op, args, env)
        else:
            for key, value in op.attrs.items():  # iOS16/17 constexpr ops keep operands as attributes
                if key != "name":
                    args.setdefault(key, value)
            call = OpCall(op.type, out_name, {k: _compute_view(v) for k, v in args.items()},
                          tuple(self._spec_for(s) for _, s in op.outputs))
            try:
                results = OPS[op.type](call)
            except UnsupportedOpError:
                raise
            except Exception as exc:  # noqa: BLE001 - re-raised with the op named
                raise CoreMLEmulatorError(f"op '{op.type}' ({out_name}) failed: {exc}") from exc
        if len(op.outputs) == 1 and op.type not in _CONTROL_FLOW:
            results = (results,)
        for (name, tspec), value in zip(op.outputs, results, strict=True):
            env[name] = _cast_out(value, self._spec_for(tspec))

    def _run_block(self, block: tuple[list[_Op], list[str], list[str]], env: dict[str, Any],
                   block_inputs: list[Any]) -> list[Any]:
        ops, in_names, out_names = block
        local = dict(env)
        local.update(zip(in_names, block_inputs, strict=True))
        for op in ops:
            if op.type == "const":
                local[op.outputs[0][0]] = _cast_out(op.attrs["val"], self._spec_for(op.outputs[0][1]))
            else:
                self._run_op(op, local)
        return [local[n] for n in out_names]

    def _control_flow(self, op: _Op, args: dict[str, Any], env: dict[str, Any]) -> tuple[Any, ...]:
        if op.type == "cond":
            branch = op.blocks[0] if bool(np.asarray(args["pred"])) else op.blocks[1]
            return tuple(self._run_block(branch, env, []))
        loop_vars = args["loop_vars"]
        loop_vars = list(loop_vars) if isinstance(loop_vars, list) else [loop_vars]
        cond_block, body_block = op.blocks
        while bool(np.asarray(self._run_block(cond_block, env, loop_vars)[0])):
            loop_vars = self._run_block(body_block, env, loop_vars)
        return tuple(loop_vars)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the selected function; inputs and outputs are keyed by feature name."""
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise CoreMLEmulatorError(f"missing model inputs: {missing} (expects {self.input_names})")
        env = dict(self._consts)
        for name, tspec in self._inputs.items():
            arr = np.asarray(inputs[name])
            want = self.input_shapes.get(name)
            if tspec.shape and None not in tspec.shape and arr.shape != tuple(tspec.shape):
                raise CoreMLEmulatorError(f"input '{name}' has shape {arr.shape}, model expects {want}")
            env[name] = _cast_out(arr, self._spec_for(tspec))
        for op, release in zip(self._ops, self._release, strict=True):
            if op.type != "const" and not op.type.startswith("constexpr_"):
                self._run_op(op, env)
            for name in release:  # only this run's reference: constants stay in self._consts
                env.pop(name, None)
        result = {}
        for name, var in zip(self.output_names, self._outputs, strict=True):
            value = np.asarray(env[var])
            dtype = self._out_dtypes.get(name)
            result[name] = value.astype(dtype) if dtype is not None else value
        return result


def load_mlpackage(path: str | Path, compute_precision: str | None = None,
                   function_name: str | None = None) -> EmulatedModel:
    """Load an ``.mlpackage`` (ML program) for emulated prediction.

    ``function_name`` selects one function of a multifunction package (as
    ``coremltools.models.MLModel(path, function_name=...)`` does); None selects the default function.
    An unknown name raises :class:`CoreMLEmulatorError` listing the available functions.

    ``compute_precision``: ``None``/``"program"`` computes as the program declares (fp16 ops in
    float16 semantics, fp32 ops in float32); ``"fp32"``/``"fp16"`` force every float tensor of
    the program to that precision (e.g. to see what an fp32 export would give in fp16).
    """
    return EmulatedModel(path, compute_precision, function_name)
