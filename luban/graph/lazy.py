"""LazyBuffer: a node of the lazy graph. Every tensor value is one.

A node records an op and its sources; nothing is computed until `realize` asks the
scheduler for kernels. A realized node becomes a BUFFER node holding device memory.
Movement ops make new nodes that only describe a view: no data moves until a kernel
reads through them.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..dtypes import DType
from .ops import BINARY, COMPARE, MOVEMENT, REDUCE, UNARY, Op


def prod(shape) -> int:
    return math.prod(shape)


class DeviceBuffer:
    """Device memory owned by one realized node; freed when the node is collected."""
    __slots__ = ("device", "handle", "nbytes")

    def __init__(self, device, nbytes: int):
        self.device, self.nbytes = device, nbytes
        self.handle = device.alloc(max(nbytes, 1))

    def __del__(self):
        try:
            self.device.free(self.handle)
        except Exception:  # interpreter shutdown: modules may be gone already
            pass


class LazyBuffer:
    __slots__ = ("op", "src", "arg", "dtype", "shape", "device", "buffer", "__weakref__")

    def __init__(self, op: Op, src: tuple, arg: Any, dtype: DType, shape: tuple, device: str):
        self.op, self.src, self.arg = op, src, arg
        self.dtype, self.shape, self.device = dtype, tuple(shape), device
        self.buffer: DeviceBuffer | None = None

    def __repr__(self) -> str:
        state = "realized" if self.buffer is not None else self.op.name
        return f"<LazyBuffer {self.device} {self.dtype.name}{list(self.shape)} {state}>"

    @property
    def realized(self) -> bool:
        return self.buffer is not None

    @property
    def numel(self) -> int:
        return prod(self.shape)

    # ---- sources ---------------------------------------------------------------
    @staticmethod
    def const(value, dtype: DType, shape: tuple, device: str) -> "LazyBuffer":
        value = _cast_scalar(value, dtype)
        node = LazyBuffer(Op.CONST, (), value, dtype, (), device)
        if not shape:
            return node
        ones = (1,) * len(shape)
        node = LazyBuffer(Op.RESHAPE, (node,), ones, dtype, ones, device)
        shape = tuple(shape)
        return node if shape == ones else LazyBuffer(Op.EXPAND, (node,), shape, dtype, shape, device)

    @staticmethod
    def iota(n: int, dtype: DType, device: str) -> "LazyBuffer":
        return LazyBuffer(Op.IOTA, (), None, dtype, (n,), device)

    @staticmethod
    def from_buffer(buf: DeviceBuffer, dtype: DType, shape: tuple, device: str) -> "LazyBuffer":
        node = LazyBuffer(Op.BUFFER, (), None, dtype, shape, device)
        node.buffer = buf
        return node

    def const_like(self, value) -> "LazyBuffer":
        return LazyBuffer.const(value, self.dtype, self.shape, self.device)

    def base_const(self):
        """The scalar if this node is a (reshaped/expanded) CONST, else None."""
        n = self
        while n.op in (Op.RESHAPE, Op.EXPAND) and n.buffer is None:
            n = n.src[0]
        return n.arg if n.op is Op.CONST else None

    # ---- compute ---------------------------------------------------------------
    def alu(self, op: Op, *others: "LazyBuffer", arg=None) -> "LazyBuffer":
        srcs = (self, *others)
        for s in others:
            assert s.shape == self.shape, f"{op}: shapes {self.shape} vs {s.shape}"
        if op is Op.WHERE:
            assert self.dtype.is_bool and srcs[1].dtype is srcs[2].dtype, op
            dtype = srcs[1].dtype
        elif op in COMPARE:
            dtype = _bool()
        elif op in (Op.CAST, Op.BITCAST):
            dtype = arg
        else:
            dtype = self.dtype
        folded = _fold_constants(op, srcs, arg, dtype)
        if folded is not None:
            return folded
        return LazyBuffer(op, srcs, arg, dtype, self.shape, self.device)

    def cast(self, dtype: DType) -> "LazyBuffer":
        return self if dtype is self.dtype else self.alu(Op.CAST, arg=dtype)

    def reduce(self, op: Op, axes: tuple) -> "LazyBuffer":
        assert op in REDUCE
        axes = tuple(sorted(set(axes)))
        if not axes:
            return self
        shape = tuple(1 if i in axes else s for i, s in enumerate(self.shape))
        return LazyBuffer(op, (self,), axes, self.dtype, shape, self.device)

    # ---- movement (views) --------------------------------------------------------
    def _view(self, op: Op, arg, shape: tuple) -> "LazyBuffer":
        c = self.base_const()
        if c is not None and op in (Op.RESHAPE, Op.EXPAND, Op.PERMUTE, Op.SHRINK, Op.FLIP):
            return LazyBuffer.const(c, self.dtype, shape, self.device)
        return LazyBuffer(op, (self,), arg, self.dtype, shape, self.device)

    def reshape(self, shape: tuple) -> "LazyBuffer":
        shape = tuple(shape)
        if shape == self.shape:
            return self
        assert prod(shape) == self.numel, f"reshape {self.shape} -> {shape}"
        src = self.src[0] if self.op is Op.RESHAPE and self.buffer is None else self
        return src._view(Op.RESHAPE, shape, shape) if shape != src.shape else src

    def permute(self, order: tuple) -> "LazyBuffer":
        order = tuple(order)
        if order == tuple(range(len(order))):
            return self
        if self.op is Op.PERMUTE and self.buffer is None:
            inner = self.arg
            return self.src[0].permute(tuple(inner[o] for o in order))
        return self._view(Op.PERMUTE, order, tuple(self.shape[o] for o in order))

    def expand(self, shape: tuple) -> "LazyBuffer":
        shape = tuple(shape)
        if shape == self.shape:
            return self
        if self.op is Op.EXPAND and self.buffer is None:
            return self.src[0].expand(shape)
        return self._view(Op.EXPAND, shape, shape)

    def pad(self, arg: tuple) -> "LazyBuffer":
        arg = tuple((int(a), int(b)) for a, b in arg)
        if all(a == 0 and b == 0 for a, b in arg):
            return self
        shape = tuple(s + a + b for s, (a, b) in zip(self.shape, arg))
        return LazyBuffer(Op.PAD, (self,), arg, self.dtype, shape, self.device)

    def shrink(self, arg: tuple) -> "LazyBuffer":
        arg = tuple((int(a), int(b)) for a, b in arg)
        if all(a == 0 and b == s for (a, b), s in zip(arg, self.shape)):
            return self
        return self._view(Op.SHRINK, arg, tuple(b - a for a, b in arg))

    def flip(self, axes: tuple) -> "LazyBuffer":
        axes = tuple(a for a in axes if self.shape[a] > 1)
        if not axes:
            return self
        return self._view(Op.FLIP, tuple(sorted(axes)), self.shape)

    # ---- data-dependent and graph ops ---------------------------------------------
    def gather(self, idx: "LazyBuffer", axis: int) -> "LazyBuffer":
        return LazyBuffer(Op.GATHER, (self, idx), axis, self.dtype, idx.shape, self.device)

    def scatter_add(self, idx: "LazyBuffer", val: "LazyBuffer", axis: int) -> "LazyBuffer":
        return LazyBuffer(Op.SCATTER_ADD, (self, idx, val), axis, self.dtype, self.shape, self.device)

    def contiguous(self) -> "LazyBuffer":
        if self.buffer is not None:
            return self
        return LazyBuffer(Op.CONTIGUOUS, (self,), None, self.dtype, self.shape, self.device)

    def copy_to(self, device: str) -> "LazyBuffer":
        if device == self.device:
            return self
        return LazyBuffer(Op.COPY, (self,), device, self.dtype, self.shape, device)

    def toposort(self) -> list["LazyBuffer"]:
        return toposort([self])


def toposort(roots: list[LazyBuffer]) -> list[LazyBuffer]:
    """Unrealized nodes reachable from roots (realized ones included as leaves),
    producers before consumers. Iterative: training graphs are deep."""
    order, seen = [], set()
    for root in roots:
        stack = [(root, False)]
        while stack:
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            if node.buffer is None:
                stack.extend((s, False) for s in reversed(node.src) if id(s) not in seen)
    return order


def _bool():
    from ..dtypes import bool_
    return bool_


def _cast_scalar(value, dtype: DType):
    if dtype.is_bool:
        return bool(value)
    if dtype.is_int:
        v = int(value)
        bits = dtype.itemsize * 8
        if dtype.kind == "u":
            return v % (1 << bits)
        v %= 1 << bits
        return v - (1 << bits) if v >= 1 << (bits - 1) else v
    return float(dtype.np.type(value)) if dtype.itemsize <= 4 else float(value)


_FOLD = {
    Op.NEG: lambda a: -a, Op.ADD: lambda a, b: a + b, Op.MUL: lambda a, b: a * b,
    Op.MAX: lambda a, b: max(a, b),
}


def _fold_constants(op: Op, srcs: tuple, arg, dtype: DType):
    """x+0, x*1 and const-op-const stay out of the graph: keeps kernels small."""
    consts = [s.base_const() for s in srcs]
    shape, device = srcs[0].shape, srcs[0].device
    if op is Op.CAST and consts[0] is not None:
        return LazyBuffer.const(consts[0], dtype, shape, device)
    if all(c is not None for c in consts) and op in _FOLD and dtype.is_float:
        with np.errstate(all="ignore"):
            return LazyBuffer.const(_FOLD[op](*consts), dtype, shape, device)
    if op is Op.ADD:
        if consts[1] is not None and consts[1] == 0 and not isinstance(consts[1], bool):
            return srcs[0]
        if consts[0] is not None and consts[0] == 0 and not isinstance(consts[0], bool):
            return srcs[1]
    if op is Op.MUL and dtype.kind != "b":
        if consts[1] is not None and consts[1] == 1:
            return srcs[0]
        if consts[0] is not None and consts[0] == 1:
            return srcs[1]
    return None


__all__ = ["LazyBuffer", "DeviceBuffer", "toposort", "prod", "MOVEMENT", "UNARY", "BINARY"]
