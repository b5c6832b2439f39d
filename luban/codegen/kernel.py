"""The kernel AST: what the scheduler hands to a device's code generator.

A kernel computes one output buffer, written contiguously (row-major) in the shape of
its root node. Its AST is a tree of `KNode`s whose leaves are LOAD (input buffer i,
contiguous, in the node's shape), CONST and IOTA. Inner nodes are elementwise,
reduce (SUM/RMAX), movement, GATHER and, only at the root, SCATTER_ADD. Movement
nodes may appear anywhere in the tree: a code generator evaluates a node "at an
index", and a movement node only rewrites that index (PAD adds a validity guard that
yields 0 outside). A reduce node evaluated at an index runs its own loop over the
reduced axes, so nested reduces and reduces under reshapes are legal.

KNodes are hash-consed: equal trees are the same object, so a kernel's structure is
its cache key and `is` compares trees.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..dtypes import DType
from ..graph.ops import Op


class KNode:
    __slots__ = ("op", "src", "arg", "dtype", "shape", "_key", "__weakref__")
    _interned: dict = {}

    def __new__(cls, op: Op, src: tuple, arg, dtype: DType, shape: tuple):
        key = (op, tuple(id(s) for s in src), _freeze(arg), dtype.name, shape)
        node = cls._interned.get(key)
        if node is not None:
            return node
        node = object.__new__(cls)
        node.op, node.src, node.arg, node.dtype, node.shape, node._key = op, src, arg, dtype, shape, key
        cls._interned[key] = node  # interned nodes live for the process: kernels are few
        return node

    def __repr__(self) -> str:
        return f"KNode({self.op!r}, {self.dtype.name}{list(self.shape)}, arg={self.arg!r}, n_src={len(self.src)})"

    def toposort(self) -> list["KNode"]:
        order, seen = [], set()

        def visit(n: KNode):
            if id(n) in seen:
                return
            seen.add(id(n))
            for s in n.src:
                visit(s)
            order.append(n)
        visit(self)
        return order

    def pretty(self, indent: int = 0) -> str:
        arg = "" if self.arg is None else f" {self.arg!r}"
        lines = [" " * indent + f"{self.op.name} {self.dtype.name}{list(self.shape)}{arg}"]
        lines += [s.pretty(indent + 2) for s in self.src]
        return "\n".join(lines)


def _freeze(arg):
    if isinstance(arg, float):  # by bits: nan != nan would defeat interning, and 0.0 == -0.0
        return ("float", arg.hex() if arg == arg else "nan")
    if isinstance(arg, (list, tuple)):
        return tuple(_freeze(a) for a in arg)
    if isinstance(arg, DType):
        return ("dtype", arg.name)
    if isinstance(arg, (int, float, bool)):
        return (type(arg).__name__, arg)
    return arg


@dataclass(frozen=True)
class Kernel:
    """ast: root KNode; inputs: (dtype, shape) of each LOAD index; name: for debug output."""
    ast: KNode
    inputs: tuple
    name: str

    @property
    def shape(self) -> tuple:
        return self.ast.shape

    @property
    def dtype(self) -> DType:
        return self.ast.dtype


@dataclass(frozen=True)
class Rendered:
    """What a renderer makes of a Kernel for a device's compile(): the source (text, or
    whatever the device compiles), the entry point's name, and the launch size (total
    work-items and work-group size; loops-style code runs as one item, (1,), None)."""
    source: Any
    name: str
    global_size: tuple = (1,)
    local_size: tuple | None = None
