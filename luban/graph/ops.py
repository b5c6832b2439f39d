"""The primitive operator set. Every luban operator is a composition of these.

Semantics (shared by every device; the conformance suite checks them):
  Unary (src: x)        NEG, EXP2, LOG2, SIN, SQRT, RECIP (1/x), TRUNC (round toward 0,
                        floats only), CAST (arg: target DType; float->int truncates,
                        x->bool is x != 0), BITCAST (arg: DType of the same itemsize)
  Binary (src: a, b)    ADD, MUL, MAX, MOD (C fmod / truncated remainder), IDIV
                        (integer division truncated toward zero), CMPLT, CMPNE (-> bool),
                        AND, OR, XOR (ints/bools), SHL, SHR (unsigned ints)
                        Both sources have the same dtype and shape.
  Ternary               WHERE (src: cond bool, a, b)
  Reduce (src: x)       SUM, RMAX; arg = tuple of axes. The output keeps reduced axes
                        with size 1 (keepdim); RMAX of an empty axis is the dtype's min.
  Movement (src: x)     RESHAPE (arg: new shape, same element count, row-major order)
                        PERMUTE (arg: axis order) EXPAND (arg: new shape; only size-1
                        dims grow) PAD (arg: ((before, after), ...) with zeros)
                        SHRINK (arg: ((start, stop), ...)) FLIP (arg: tuple of axes)
  Sources               CONST (arg: Python value, shape ()), IOTA (shape (n,): 0..n-1 in
                        its dtype), BUFFER (a realized device buffer; graph only)
  Data-dependent        GATHER (src: x, idx; arg: axis): out[..i..] = x[.. idx[..i..] ..]
                        along axis, idx has x's shape except along axis, out has idx's
                        shape; an index outside [0, x.shape[axis]) is an IndexError.
                        SCATTER_ADD (src: base, idx, val; arg: axis): a copy of base
                        with val accumulated at idx along axis (the adjoint of GATHER).
  Graph only            CONTIGUOUS (materialize here), COPY (to another device; arg:
                        device name), ASSIGN (src: target, value: write value into
                        target's buffer)
"""
from __future__ import annotations

from enum import Enum, auto


class Op(Enum):
    NEG = auto(); EXP2 = auto(); LOG2 = auto(); SIN = auto(); SQRT = auto()  # noqa: E702
    RECIP = auto(); TRUNC = auto(); CAST = auto(); BITCAST = auto()  # noqa: E702
    ADD = auto(); MUL = auto(); MAX = auto(); MOD = auto(); IDIV = auto()  # noqa: E702
    CMPLT = auto(); CMPNE = auto(); AND = auto(); OR = auto(); XOR = auto()  # noqa: E702
    SHL = auto(); SHR = auto()  # noqa: E702
    WHERE = auto()
    SUM = auto(); RMAX = auto()  # noqa: E702
    RESHAPE = auto(); PERMUTE = auto(); EXPAND = auto(); PAD = auto()  # noqa: E702
    SHRINK = auto(); FLIP = auto()  # noqa: E702
    CONST = auto(); IOTA = auto(); BUFFER = auto()  # noqa: E702
    GATHER = auto(); SCATTER_ADD = auto()  # noqa: E702
    CONTIGUOUS = auto(); COPY = auto(); ASSIGN = auto()  # noqa: E702
    LOAD = auto()  # kernel AST only: arg = index of the kernel's input buffer

    def __repr__(self) -> str:
        return self.name


UNARY = frozenset({Op.NEG, Op.EXP2, Op.LOG2, Op.SIN, Op.SQRT, Op.RECIP, Op.TRUNC, Op.CAST, Op.BITCAST})
BINARY = frozenset({Op.ADD, Op.MUL, Op.MAX, Op.MOD, Op.IDIV, Op.CMPLT, Op.CMPNE, Op.AND, Op.OR,
                    Op.XOR, Op.SHL, Op.SHR})
TERNARY = frozenset({Op.WHERE})
ELEMENTWISE = UNARY | BINARY | TERNARY
REDUCE = frozenset({Op.SUM, Op.RMAX})
MOVEMENT = frozenset({Op.RESHAPE, Op.PERMUTE, Op.EXPAND, Op.PAD, Op.SHRINK, Op.FLIP})
COMPARE = frozenset({Op.CMPLT, Op.CMPNE})
