"""Renders a Kernel into a Python closure that evaluates its AST with NumPy.

This is the reference semantics of every primitive (see graph/ops.py): the `numpy`
device runs it, and generated code on other devices must agree with it.
"""
from __future__ import annotations

import numpy as np

from ..dtypes import bfloat16
from ..graph.ops import Op
from .kernel import Kernel, KNode, Rendered

_UNARY = {
    Op.NEG: np.negative, Op.EXP2: np.exp2, Op.LOG2: np.log2, Op.SIN: np.sin,
    Op.SQRT: np.sqrt, Op.TRUNC: np.trunc,
}
_BINARY = {
    Op.ADD: np.add, Op.MUL: np.multiply, Op.MAX: np.maximum, Op.CMPLT: np.less,
    Op.CMPNE: np.not_equal, Op.AND: np.bitwise_and, Op.OR: np.bitwise_or,
    Op.XOR: np.bitwise_xor, Op.SHL: np.left_shift, Op.SHR: np.right_shift,
}


def _is_float(a: np.ndarray) -> bool:
    return a.dtype.kind == "f" or a.dtype == bfloat16.np  # ml_dtypes' bfloat16 has kind "V"


def _idiv(a, b):
    if _is_float(a):
        return np.trunc(a / b)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.floor_divide(a, np.where(b == 0, 1, b))
        r = a - q * b
        # floor -> truncate: step back toward zero where the operands' signs differ and r != 0
        fix = (r != 0) & ((a < 0) != (b < 0))
        q = q + fix.astype(q.dtype)
        return np.where(b == 0, 0, q).astype(a.dtype)


def _mod(a, b):
    if _is_float(a):
        return np.fmod(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b == 0, 0, np.fmod(a, np.where(b == 0, 1, b))).astype(a.dtype)


def _cast(x: np.ndarray, dt) -> np.ndarray:
    if dt.is_bool:
        return x != 0
    if dt.is_int and _is_float(x):
        if x.dtype == bfloat16.np:
            x = x.astype(np.float32)  # exact, and np.nan_to_num does not know ml_dtypes
        with np.errstate(invalid="ignore"):
            x = np.trunc(x)
            x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    if dt is bfloat16 and x.dtype == np.float64:
        x = _round_odd_f32(x)  # one rounding whatever ml_dtypes does (0.7 rounds once, older twice)
    return x.astype(dt.np)


def _round_odd_f32(x: np.ndarray) -> np.ndarray:
    """float64 -> float32, rounding an inexact result to odd, so that a second rounding
    to a narrower float rounds as if once."""
    with np.errstate(over="ignore", invalid="ignore"):
        f = x.astype(np.float32)
        u = f.view(np.uint32)
        inexact = (f == f) & (f.astype(np.float64) != x)
        down = np.where(np.abs(f.astype(np.float64)) > np.abs(x), u - np.uint32(1), u)
        return np.where(inexact, down | np.uint32(1), u).astype(np.uint32).view(np.float32)


def _gather(x: np.ndarray, idx: np.ndarray, axis: int) -> np.ndarray:
    n = x.shape[axis]
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = idx[(idx < 0) | (idx >= n)].reshape(-1)[0]
        raise IndexError(f"gather: index {int(bad)} is out of bounds for axis {axis} with size {n}")
    return np.take_along_axis(x, idx.astype(np.int64), axis=axis)


def _scatter_add(base, idx, val, axis: int) -> np.ndarray:
    n = base.shape[axis]
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = idx[(idx < 0) | (idx >= n)].reshape(-1)[0]
        raise IndexError(f"scatter_add: index {int(bad)} is out of bounds for axis {axis} with size {n}")
    out = base.copy()
    grid = list(np.indices(idx.shape, sparse=True))
    grid[axis] = idx.astype(np.int64)
    np.add.at(out, tuple(grid), val)
    return out


def evaluate(node: KNode, inputs: list, memo: dict) -> np.ndarray:
    got = memo.get(id(node))
    if got is not None:
        return got
    src = [evaluate(s, inputs, memo) for s in node.src]
    op, arg, dt = node.op, node.arg, node.dtype
    with np.errstate(all="ignore"):
        if op is Op.LOAD:
            out = inputs[arg]
        elif op is Op.CONST:
            out = np.array(arg, dtype=dt.np)
        elif op is Op.IOTA:
            out = np.arange(node.shape[0], dtype=dt.np)
        elif op in _UNARY:
            out = _UNARY[op](src[0])
        elif op is Op.RECIP:
            out = np.reciprocal(src[0]) if dt.is_float else np.floor_divide(1, src[0])
        elif op is Op.CAST:
            out = _cast(src[0], arg)
        elif op is Op.BITCAST:
            out = np.ascontiguousarray(src[0]).view(arg.np)
        elif op in _BINARY:
            out = _BINARY[op](src[0], src[1])
        elif op is Op.IDIV:
            out = _idiv(src[0], src[1])
        elif op is Op.MOD:
            out = _mod(src[0], src[1])
        elif op is Op.WHERE:
            out = np.where(src[0], src[1], src[2])
        elif op is Op.SUM:
            out = np.sum(src[0], axis=arg, keepdims=True, dtype=dt.np)
        elif op is Op.RMAX:
            x = src[0]
            if x.size == 0:
                from ..dtypes import min_value
                out = np.full(node.shape, min_value(dt), dtype=dt.np)
            else:
                out = np.max(x, axis=arg, keepdims=True)
        elif op is Op.RESHAPE:
            out = src[0].reshape(arg)
        elif op is Op.PERMUTE:
            out = src[0].transpose(arg)
        elif op is Op.EXPAND:
            out = np.broadcast_to(src[0], arg)
        elif op is Op.PAD:
            out = np.pad(src[0], arg)
        elif op is Op.SHRINK:
            out = src[0][tuple(slice(a, b) for a, b in arg)]
        elif op is Op.FLIP:
            out = np.flip(src[0], arg)
        elif op is Op.GATHER:
            out = _gather(src[0], src[1], arg)
        elif op is Op.SCATTER_ADD:
            out = _scatter_add(src[0], src[1], src[2], arg)
        else:
            raise NotImplementedError(f"numpy device: no rule for {op!r}")
    out = np.asarray(out)
    if out.dtype != dt.np:
        out = out.astype(dt.np)
    assert out.shape == node.shape, (op, out.shape, node.shape)
    memo[id(node)] = out
    return out


def render(kernel: Kernel, caps: dict | None = None) -> Rendered:
    """The program is a callable taking [out, in0, ...] uint8 buffers."""
    specs = kernel.inputs
    out_dt, out_shape = kernel.dtype, kernel.shape

    def program(bufs: list) -> None:
        inputs = []
        for (dt, shape), b in zip(specs, bufs[1:]):
            n = int(np.prod(shape, dtype=np.int64))
            inputs.append(b[: n * dt.itemsize].view(dt.np).reshape(shape))
        res = evaluate(kernel.ast, inputs, {})
        n = res.size
        bufs[0][: n * out_dt.itemsize].view(out_dt.np).reshape(out_shape)[...] = res
    return Rendered(program, kernel.name)
