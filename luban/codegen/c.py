"""Renders a Kernel (see kernel.py) into one C function for the `cpu` device.

Design: "evaluate a node at an index". A loop nest over the root's shape writes the
output contiguously. A node's value at an index (one symbolic expression per dim) is
emitted as typed temporaries: LOAD reads its input at the linearized index,
elementwise nodes combine their sources at the same index, movement nodes only
rewrite the index (PAD also guards its source so nothing is read out of bounds), a
reduce runs its own loop nest, and GATHER checks the index it loads. Values are cached
per (node, index) inside the C block that computed them, so shared subtrees are
computed once.

float16/bfloat16 are stored as bits and computed in float, rounded back after every
operation so each primitive rounds as the reference (numpy_interp) does.
"""
from __future__ import annotations

import hashlib
import math
import re
from contextlib import contextmanager

import numpy as np

from .. import dtypes
from ..dtypes import DType, min_value
from ..graph.ops import BINARY, ELEMENTWISE, MOVEMENT, REDUCE, Op
from .kernel import Kernel, KNode
from .symbolic import Const, Var, in_range, linearize, unravel, var

PARALLEL_WORK = 1 << 14  # below this many inner iterations, threads cost more than they save

PRELUDE = r"""#include <math.h>
#include <string.h>
#include <limits.h>
/* float16 via the compiler's _Float16 (correctly rounded, nan/inf preserved) */
static inline float f16_to_f32(unsigned short h) { _Float16 x; memcpy(&x, &h, 2); return (float)x; }
static inline unsigned short f32_to_f16(float f) { _Float16 x = (_Float16)f; unsigned short h; memcpy(&h, &x, 2); return h; }
static inline float f16_round(float f) { return (float)(_Float16)f; }
static inline float f16_round_d(double d) { return (float)(_Float16)d; }
/* bfloat16 is the top half of a float32: round to nearest even, keep nan quiet */
static inline float bf16_to_f32(unsigned short h) { unsigned int u = (unsigned int)h << 16; float f; memcpy(&f, &u, 4); return f; }
static inline unsigned short f32_to_bf16(float f) {
  unsigned int u; memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);
  return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static inline float bf16_round(float f) { return bf16_to_f32(f32_to_bf16(f)); }
/* float -> int like the reference on x86: nan/inf -> 0, other out-of-range -> INT64_MIN */
static inline long long f2i(double x) {
  if (x != x || isinf(x)) return 0;
  if (x >= 0x1p63 || x < -0x1p63) return LLONG_MIN;
  return (long long)x;
}
"""

_ERR = "__atomic_store_n(err, 1, __ATOMIC_RELAXED);"
_HALF = {dtypes.float16: "f16", dtypes.bfloat16: "bf16"}
_MATH = {Op.EXP2: "exp2", Op.LOG2: "log2", Op.SIN: "sin", Op.SQRT: "sqrt", Op.TRUNC: "trunc"}
_EXACT = frozenset({Op.NEG, Op.MAX, Op.WHERE, Op.TRUNC, Op.MOD, Op.CMPLT, Op.CMPNE})  # no rounding needed


# --- dtype helpers: compute type, conversions at load/store, literals ---------------

def _ct(dt: DType) -> str:
    """The C type a value of dtype `dt` is computed in."""
    return "float" if dt in _HALF else dt.ctype


def _load(dt: DType, x: str) -> str:
    return f"{_HALF[dt]}_to_f32({x})" if dt in _HALF else x


def _store(dt: DType, x: str) -> str:
    return f"f32_to_{_HALF[dt]}({x})" if dt in _HALF else x


def _round(dt: DType, x: str) -> str:
    return f"{_HALF[dt]}_round({x})" if dt in _HALF else x


def _fn(name: str, dt: DType) -> str:
    return name if dt is dtypes.float64 else name + "f"


def _literal(value, dt: DType) -> str:
    v = np.array(value, dtype=dt.np)  # the reference's conversion of a CONST
    if dt.is_bool:
        return "1" if v else "0"
    if dt.is_int:
        i = int(v)
        return "(-9223372036854775807LL - 1)" if i == -2**63 else f"(({dt.ctype}){i}LL)"
    f = float(v)
    if math.isnan(f):
        return "NAN"
    if math.isinf(f):
        return "INFINITY" if f > 0 else "(-INFINITY)"
    text = f.hex() + ("" if dt is dtypes.float64 else "f")
    return f"({text})" if f < 0 or text.startswith("-") else text


def _max(a: str, b: str, dt: DType) -> str:
    if dt.is_bool:
        return f"({a} | {b})"
    if dt.is_float:  # numpy.maximum: nan wins, and ties keep a (so -0.0 vs 0.0 keeps a)
        return f"(({a} >= {b} || {a} != {a}) ? {a} : {b})"
    return f"({a} >= {b} ? {a} : {b})"


def _cast(src: DType, dst: DType, x: str) -> str:
    if dst.is_bool:
        return f"({x} != 0)"
    if dst.is_int:
        return f"(({dst.ctype})f2i({x}))" if src.is_float else f"(({dst.ctype}){x})"
    if dst is dtypes.float16 and src is dtypes.float64:
        return f"f16_round_d({x})"  # one rounding, as numpy does; bfloat16 goes via float like ml_dtypes
    return _round(dst, f"(({_ct(dst)}){x})")


def _unary(op: Op, dt: DType, x: str) -> str:
    if op is Op.NEG and not dt.is_bool:
        return f"(-{x})"
    if op in _MATH and dt.is_float:
        return f"{_fn(_MATH[op], dt)}({x})"
    if op is Op.RECIP:
        if dt.is_float:
            return f"({'1.0' if dt is dtypes.float64 else '1.0f'} / {x})"
        if dt.kind == "i":  # floor(1 / x), 0 for x == 0, as the reference's floor_divide
            return f"({x} == 0 ? 0 : {x} == 1 ? 1 : {x} < 0 ? -1 : 0)"
        return f"({x} == 1)"
    raise TypeError(f"C renderer: {op.name} is not defined for {dt.name}")


def _binary(op: Op, dt: DType, a: str, b: str) -> str:
    """Expression for `op` on operands of dtype `dt` (already in its compute type)."""
    bits, signed = dt.itemsize * 8, dt.kind == "i"
    if op is Op.ADD:
        return f"({a} | {b})" if dt.is_bool else f"({a} + {b})"
    if op is Op.MUL:
        return f"({a} & {b})" if dt.is_bool else f"({a} * {b})"
    if op is Op.MAX:
        return _max(a, b, dt)
    if op is Op.CMPLT:
        return f"({a} < {b})"
    if op is Op.CMPNE:
        return f"({a} != {b})"
    if op in (Op.AND, Op.OR, Op.XOR) and not dt.is_float:
        return f"({a} {dict(AND='&', OR='|', XOR='^')[op.name]} {b})"
    if op is Op.MOD and dt.is_float:
        return f"{_fn('fmod', dt)}({a}, {b})"
    if op is Op.IDIV and dt.is_float:  # numpy rounds the quotient to the dtype before trunc
        return f"{_fn('trunc', dt)}({_round(dt, f'{a} / {b}')})"
    if dt.is_int:  # x86 traps on x / 0 and INT_MIN / -1: the reference gives 0 and -x
        if op is Op.MOD:
            return f"(({b} == 0{f' || {b} == -1' if signed else ''}) ? 0 : {a} % {b})"
        if op is Op.IDIV:
            return f"({b} == 0 ? 0 : {f'{b} == -1 ? -{a} : ' if signed else ''}{a} / {b})"
        # shifts by >= the width give 0 (or -1 for a negative signed value), as numpy
        in_width = f"(unsigned long long){b} < {bits}"
        if op is Op.SHL:
            return f"({in_width} ? ({dt.ctype})((unsigned long long){a} << {b}) : 0)"
        if op is Op.SHR:
            return f"({in_width} ? {a} >> {b} : {f'({a} < 0 ? -1 : 0)' if signed else '0'})"
    raise TypeError(f"C renderer: {op.name} is not defined for {dt.name}")


# --- emission -------------------------------------------------------------------

def _indent(lines: list) -> list:
    return ["  " + line for line in lines]


def _nest(loops: list, body: list, outer: str | None = None, inner: str | None = None) -> list:
    """Wrap `body` in for-loops over [(var, n), ...], outermost first, with optional
    pragmas on the outermost and innermost loop."""
    for k in reversed(range(len(loops))):
        name, n = loops[k]
        pragma = [p for p, at in ((outer, 0), (inner, len(loops) - 1)) if p and k == at]
        body = pragma + [f"for (long long {name} = 0; {name} < {n}; {name}++) {{"] + _indent(body) + ["}"]
    return body


def _parallel(sizes: list) -> str:
    """Pragma for the outer loops: collapse outer dims until there is enough to share,
    but keep the innermost loop out so it stays simple to vectorize."""
    k, count = 1, sizes[0]
    while count < 64 and k < len(sizes) - 1:
        count, k = count * sizes[k], k + 1
    return "#pragma omp parallel for" + (f" collapse({k})" if k > 1 else "")


def _has_loop(lines: list) -> bool:
    return any(line.lstrip().startswith("for (") for line in lines)


def _cost(node: KNode, memo: dict) -> int:
    """Inner-loop iterations needed for one element of `node` (reduces multiply)."""
    if id(node) not in memo:
        cost = max((_cost(s, memo) for s in node.src), default=1)
        if node.op in REDUCE:
            cost *= math.prod(node.src[0].shape[a % len(node.shape)] for a in set(node.arg))
        memo[id(node)] = max(cost, 1)
    return memo[id(node)]


class _Emitter:
    """C statements in nested blocks; the (node, index) -> value cache is scoped like C,
    so a value computed inside an `if` or loop body is not reused outside it."""

    def __init__(self):
        self.blocks: list[tuple[list, dict]] = [([], {})]
        self.count = 0

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def line(self, *lines: str) -> None:
        self.blocks[-1][0].extend(lines)

    def tmp(self, ctype: str, expr: str, prefix: str = "t") -> str:
        name = self.fresh(prefix)
        self.line(f"{ctype} {name} = {expr};")
        return name

    def cached(self, key):
        for _, cache in reversed(self.blocks):
            if key in cache:
                return cache[key]
        return None

    def remember(self, key, value: str) -> None:
        self.blocks[-1][1][key] = value

    @contextmanager
    def block(self):
        self.blocks.append(([], {}))
        try:
            yield self.blocks[-1][0]
        finally:
            self.blocks.pop()


class _Renderer:
    def __init__(self):
        self.em = _Emitter()
        self.costs: dict = {}

    def value(self, node: KNode, idx: list) -> str:
        """C expression (a temporary or a literal) for `node` at index `idx`."""
        key = (node, tuple(idx))
        got = self.em.cached(key)
        if got is None:
            got = self._eval(node, idx)
            self.em.remember(key, got)
        return got

    def _eval(self, node: KNode, idx: list) -> str:
        op, dt, em = node.op, node.dtype, self.em
        if op is Op.LOAD:
            return em.tmp(_ct(dt), _load(dt, f"in{node.arg}[{linearize(idx, node.shape).render()}]"))
        if op is Op.CONST:
            return _literal(node.arg, dt)
        if op is Op.IOTA:
            i = idx[0].render()
            return em.tmp(_ct(dt), f"({i} != 0)" if dt.is_bool else _round(dt, f"(({_ct(dt)})({i}))"))
        if op in ELEMENTWISE:
            return self._elementwise(node, [self.value(s, idx) for s in node.src])
        if op in REDUCE:
            return self._reduce(node, idx)
        if op is Op.PAD:
            return self._pad(node, idx)
        if op in MOVEMENT:
            return self.value(node.src[0], _move(node, idx))
        if op is Op.GATHER:
            return self._gather(node, idx)
        raise NotImplementedError(f"C renderer: {op!r} cannot appear inside a kernel AST"
                                  + (" (only as its root)" if op is Op.SCATTER_ADD else ""))

    def _elementwise(self, node: KNode, vals: list) -> str:
        op, dt, src = node.op, node.dtype, node.src[0].dtype
        if op is Op.BITCAST:  # reinterpret the stored bits
            bits = self.em.tmp(src.ctype, _store(src, vals[0]))
            out = self.em.fresh("t")
            self.em.line(f"{dt.ctype} {out}; memcpy(&{out}, &{bits}, {dt.itemsize});")
            return self.em.tmp(_ct(dt), _load(dt, out))
        if op is Op.CAST:
            expr = _cast(src, dt, vals[0])
        elif op is Op.WHERE:
            expr = f"({vals[0]} ? {vals[1]} : {vals[2]})"
        elif op in BINARY:
            expr = _binary(op, src, *vals)
        else:
            expr = _unary(op, dt, vals[0])
        if op not in _EXACT and op is not Op.CAST:
            expr = _round(dt, expr)
        return self.em.tmp(_ct(dt), expr)

    def _pad(self, node: KNode, idx: list) -> str:
        src = node.src[0]
        inner = [i - before for i, (before, _) in zip(idx, node.arg)]
        conds = [in_range(i, n) for i, n in zip(inner, src.shape)]
        if False in conds:
            return _literal(0, node.dtype)
        conds = [c for c in conds if c is not True]
        if not conds:
            return self.value(src, inner)
        out = self.em.tmp(_ct(node.dtype), _literal(0, node.dtype))
        with self.em.block() as body:  # the source is only evaluated (and read) where valid
            self.em.line(f"{out} = {self.value(src, inner)};")
        self.em.line(f"if ({' && '.join(conds)}) {{", *_indent(body), "}")
        return out

    def _reduce(self, node: KNode, idx: list) -> str:
        src, dt, em = node.src[0], node.dtype, self.em
        axes = sorted({a % len(node.shape) for a in node.arg})
        is_sum = node.op is Op.SUM
        if any(src.shape[a] == 0 for a in axes):
            return _literal(0 if is_sum else min_value(dt), dt)
        acc_t = ("double" if dt in (dtypes.float32, dtypes.float64) else _ct(dt)) if is_sum else _ct(dt)
        acc = em.tmp(acc_t, "0" if is_sum else _literal(min_value(dt), dt), "acc")
        rvars = {a: var(em.fresh("r"), src.shape[a]) for a in axes}
        with em.block() as body:
            v = self.value(src, [rvars.get(k, i) for k, i in enumerate(idx)])
            if is_sum:
                em.line(f"{acc} {'|' if dt.is_bool else '+'}= {v};")
            else:
                em.line(f"{acc} = {_max(acc, v, dt)};")
        loops = [(r.name, r.n) for r in rvars.values() if isinstance(r, Var)]
        # a float sum's order is free to change only because we say so: let it vectorize
        simd = f"#pragma omp simd reduction({'|' if dt.is_bool else '+'}:{acc})" \
            if is_sum and not _has_loop(body) else None
        em.line(*_nest(loops, body, inner=simd))
        return em.tmp(_ct(dt), _round(dt, f"(({_ct(dt)}){acc})"))

    def _gather(self, node: KNode, idx: list) -> str:
        x, index = node.src
        if not index.dtype.is_int:
            raise TypeError(f"C renderer: GATHER index must be an integer dtype, got {index.dtype.name}")
        axis = node.arg % len(node.shape)
        n = x.shape[axis]
        g = self.em.tmp("long long", f"(long long){self.value(index, idx)}", "g")
        self.em.line(f"if ({g} < 0 || {g} >= {n}) {{ {_ERR} {g} = 0; }}")
        if n == 0:  # nothing may be read
            return _literal(0, node.dtype)
        return self.value(x, [var(g, n) if k == axis else i for k, i in enumerate(idx)])

    # --- top-level loop nests -----------------------------------------------------

    def write(self, node: KNode, shape: tuple, dt: DType) -> list:
        """out[i] = node[i] for every index i of `shape`."""
        if 0 in shape:
            return []
        ivars = [var(f"i{k}", n) for k, n in enumerate(shape)]
        with self.em.block() as body:
            v = self.value(node, ivars)
            self.em.line(f"out[{linearize(ivars, shape).render()}] = {_store(dt, v)};")
        loops = [(i.name, i.n) for i in ivars if isinstance(i, Var)]
        parallel = loops and math.prod(shape) * _cost(node, self.costs) >= PARALLEL_WORK
        return _nest(loops, body, outer=_parallel([n for _, n in loops]) if parallel else None)

    def scatter_add(self, node: KNode) -> list:
        """out = base, then out[.. idx[j] ..] += val[j] over every j, in order along the axis."""
        base, index, val = node.src
        if not index.dtype.is_int:
            raise TypeError(f"C renderer: SCATTER_ADD index must be an integer dtype, got {index.dtype.name}")
        dt, shape = node.dtype, index.shape
        axis = node.arg % len(shape)
        lines = self.write(base, node.shape, dt)
        if 0 in shape:
            return lines
        jvars = [var(f"j{k}", n) for k, n in enumerate(shape)]
        n = node.shape[axis]
        with self.em.block() as body:
            g = self.em.tmp("long long", f"(long long){self.value(index, jvars)}", "g")
            with self.em.block() as update:
                addr = linearize([var(g, n) if k == axis else j for k, j in enumerate(jvars)], node.shape).render()
                total = _round(dt, _binary(Op.ADD, dt, _load(dt, f"out[{addr}]"), self.value(val, jvars)))
                self.em.line(f"out[{addr}] = {_store(dt, total)};")
            self.em.line(f"if ({g} < 0 || {g} >= {n}) {{ {_ERR} }} else {{", *_indent(update), "}")
        # different positions off the axis never collide: run one of them in parallel
        loops = [(j.name, j.n, k) for k, j in enumerate(jvars) if isinstance(j, Var)]
        free = [lp for lp in loops if lp[2] != axis]
        work = math.prod(shape) * max(_cost(index, self.costs), _cost(val, self.costs))
        outer = None
        if free and work >= PARALLEL_WORK:
            loops.remove(free[0])
            loops.insert(0, free[0])
            outer = "#pragma omp parallel for"
        return lines + _nest([(name, n) for name, n, _ in loops], body, outer=outer)


def _move(node: KNode, idx: list) -> list:
    """The source index that movement `node` reads at `idx` (PAD is handled apart)."""
    op, arg, src_shape = node.op, node.arg, node.src[0].shape
    if op is Op.PERMUTE:
        out = [None] * len(idx)
        for j, a in enumerate(arg):
            out[a] = idx[j]
        return out
    if op is Op.EXPAND:
        return [Const(0) if s == 1 else i for i, s in zip(idx, src_shape)]
    if op is Op.SHRINK:
        return [i + start for i, (start, _) in zip(idx, arg)]
    if op is Op.FLIP:
        axes = {a % len(idx) for a in arg}
        return [(n - 1) - i if k in axes else i for k, (i, n) in enumerate(zip(idx, src_shape))]
    if op is Op.RESHAPE:
        return unravel(linearize(idx, node.shape), src_shape)
    raise NotImplementedError(f"C renderer: no index rule for {op!r}")


def render(kernel: Kernel) -> tuple[str, str]:
    """C source of the kernel and the name of its function:
    void NAME(OUT* restrict out, const IN0* restrict in0, ..., int* restrict err).
    `err` is set to 1 if a GATHER/SCATTER_ADD index was out of range."""
    root, r = kernel.ast, _Renderer()
    if root.op is Op.SCATTER_ADD:
        body = r.scatter_add(root)
    else:
        body = r.write(root, root.shape, root.dtype)
    params = [f"{root.dtype.ctype}* restrict out"]
    params += [f"const {dt.ctype}* restrict in{i}" for i, (dt, _) in enumerate(kernel.inputs)]
    params.append("int* restrict err")
    text = "(" + ", ".join(params) + ") {\n" + "\n".join(_indent(body)) + "\n}\n"
    base = re.sub(r"\W", "_", kernel.name)[:48] or "kernel"
    name = f"{'k_' if base[0].isdigit() else ''}{base}_{hashlib.sha256(text.encode()).hexdigest()[:10]}"
    return f"{PRELUDE}\nvoid {name}{text}", name
