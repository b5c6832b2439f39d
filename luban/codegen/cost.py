"""What a kernel costs: arithmetic operations (FLOPs) and bytes moved, for profiling.

Convention (the one torch's FLOP counters use for elementwise ops: one op per output
element): each arithmetic node is charged once per element at which it is evaluated.

- Elementwise ALU nodes (ADD, MUL, EXP2, CMPLT, WHERE, ...) cost 1 per evaluation;
  CAST/BITCAST (conversions), movement, LOAD/CONST/IOTA and GATHER cost 0.
- A reduce costs one op per reduced element: SUM of a (M, N, K) -> (M, N, 1) costs MNK,
  so a matmul (MUL then SUM) is 2*M*N*K. SCATTER_ADD costs one add per scattered value.
- Evaluation points flow from the root (one per output element) down the tree: a reduce
  evaluates its source reduce-size times per output element; under an EXPAND a node is
  evaluated once per distinct element (broadcast values are computed once, as the C
  renderer hoists them); under a PAD only at the valid positions; under a SHRINK only at
  the kept ones. A node shared by several parents (hash-consed AST) is one value: it is
  charged once, at the most points any parent needs, within one loop: a reduce's source
  is a loop of its own, so what a row's sum and the row's output both compute (a fused
  softmax's exp) is charged in each; a reduce itself is computed once, where the widest
  loop reading it needs it (a row's max, hoisted above the loops that use it).

Bytes = the output buffer written + each input buffer read once (no cache effects).
"""
from __future__ import annotations

from math import prod

from ..graph.ops import ELEMENTWISE, REDUCE, Op
from .kernel import Kernel, KNode

_FREE = frozenset({Op.CAST, Op.BITCAST})
_cache: dict = {}  # KNode (interned, identity-hashed) -> flops


def _numel(shape: tuple) -> int:
    return prod(shape)


def _child_points(n: KNode, pts: int, child: KNode) -> int:
    if n.op in REDUCE or n.op in (Op.EXPAND, Op.PAD):
        # reduce: reduce-size times more; EXPAND/PAD: only the child's own elements
        return pts * _numel(child.shape) // max(_numel(n.shape), 1)
    if n.op is Op.SCATTER_ADD and child is not n.src[0]:
        return _numel(child.shape)  # idx and val: once per scattered value
    return pts  # elementwise, RESHAPE, PERMUTE, FLIP, SHRINK, GATHER: same points


def flops(kernel: Kernel | KNode) -> int:
    """Arithmetic operations one launch of `kernel` evaluates (see the module docstring)."""
    root = kernel.ast if isinstance(kernel, Kernel) else kernel
    hit = _cache.get(root)
    if hit is not None:
        return hit
    order = root.toposort()[::-1]  # parents before children
    reduces: dict = {}  # id -> the most points any loop needs the reduce at
    total = 0

    def loop(start: KNode, pts: int) -> None:
        """Charge the nodes one loop evaluates from `start` down to the reduces it reads."""
        nonlocal total
        points = {id(start): pts}
        for n in order:
            p = points.get(id(n))
            if p is None:
                continue
            if n.op in REDUCE:
                reduces[id(n)] = max(reduces.get(id(n), 0), p)
                continue
            if n.op in ELEMENTWISE and n.op not in _FREE:
                total += p
            elif n.op is Op.SCATTER_ADD:
                total += _numel(n.src[2].shape)
            for s in n.src:
                q = _child_points(n, p, s)
                if q > points.get(id(s), -1):
                    points[id(s)] = q

    loop(root, _numel(root.shape))
    for n in order:  # a reduce after every loop that reads it
        if n.op in REDUCE and id(n) in reduces:
            p = reduces[id(n)] * _numel(n.src[0].shape) // max(_numel(n.shape), 1)
            total += p
            loop(n.src[0], p)
    _cache[root] = total
    return total


def bytes_moved(kernel: Kernel) -> int:
    """Output bytes written + bytes of every input buffer read."""
    out = _numel(kernel.shape) * kernel.dtype.itemsize
    return out + sum(_numel(shape) * dtype.itemsize for dtype, shape in kernel.inputs)
