"""The C-family renderer: turns a Kernel (see kernel.py) into one function of C-like
source. Everything a dialect differs in (qualifiers, how work is split among threads,
thread and group indices, barriers, local memory, math names, helper prelude) comes
from a `Dialect`; `c.py` (OpenMP C for the cpu device) and `opencl.py` are dialects,
and a CUDA-, HIP-, MUSA- or BANG-like one would be another small file.

Design: "evaluate a node at an index". The output is written contiguously; each of its
elements is the root evaluated at that element's index (one symbolic expression per
dim). A node's value at an index is emitted as typed temporaries: LOAD reads its input
at the linearized index, elementwise nodes combine their sources at the same index,
movement nodes only rewrite the index (PAD also guards its source so nothing is read
out of bounds), a reduce runs its own loop nest, and GATHER checks the index it loads.

Each value is emitted in the outermost block where its index is defined (never out of
a PAD guard) and cached there per (node, index): shared subtrees are computed once and
loop-invariant work, like a row max under a broadcast, leaves the inner loops.

Two ways to share the output among threads:
- loops (a dialect without thread indices, like OpenMP C): a loop nest over the output;
  the outer loops run in parallel when there is enough work. When a reduce's loads run
  along the output's last dim (a matmul, a column sum), that dim is tiled and the
  reduce keeps one accumulator per tile position, with the tile loop innermost, so it
  vectorizes and reads memory in order.
- work-items (OpenCL, CUDA-like): one work-item per output element; or, for a few
  outputs each reducing many values, one work-group per output element whose items
  split the reduce and combine their partial results in local memory.

float16/bfloat16 are stored as bits and computed in float, rounded back after every
operation so each primitive rounds as the reference (numpy_interp) does.
"""
from __future__ import annotations

import hashlib
import math
import re
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import numpy as np

from .. import dtypes
from ..dtypes import DType, min_value
from ..graph.ops import BINARY, ELEMENTWISE, MOVEMENT, REDUCE, Op
from .kernel import Kernel, KNode, Rendered
from .symbolic import Const, Var, in_range, linearize, stride, unravel, var

# below this many inner iterations, waking the (passively waiting) threads costs more
# than they save (W4, 100 small kernels: 1 << 14 gave 11.5 ms, 1 << 16 ~10.5 ms)
PARALLEL_WORK = 1 << 16
TILE = 512  # most accumulators a reduce keeps per tile of the output's last dim
SPLIT = 4  # a lone tile (a column sum: one output row) is cut in this many, one per thread
GROUP_REDUCE_MIN = 1024  # a reduce at least this long may be split across a work-group
GROUP_OUTPUTS_MAX = 4096  # ... when the kernel has at most this many outputs

# Helpers every dialect's prelude ends with. A dialect defines before them: i64/u64,
# I64_MIN, u2f/f2u (float <-> bits), HAS_F64 and, where it has it, F2I_T (the widest
# float type, in which float -> int conversions are checked).
HELPERS = r"""
/* float16 <-> float by bit manipulation without branches, so that loops vectorize;
   round to nearest even, nan payloads kept */
static inline float f16_to_f32(unsigned short h) {
  unsigned int em = (unsigned int)(h & 0x7fffu) << 13;
  unsigned int u = (h & 0x7c00u) == 0x7c00u ? em | 0x7f800000u : f2u(u2f(em) * 0x1p112f);
  return u2f(u | (unsigned int)(h & 0x8000u) << 16);
}
static inline unsigned short f32_to_f16(float f) {
  unsigned int u = f2u(f), a = u & 0x7fffffffu, m = a >> 13 & 0x3ffu;
  unsigned int big = a > 0x7f800000u ? 0x7c00u | (m ? m : 0x200u) : 0x7c00u;  /* nan; inf or overflow */
  unsigned int sub = f2u(u2f(a) + 0.5f) - 0x3f000000u;  /* below 2^-14: the float add rounds it */
  unsigned int norm = (a + 0xc8000fffu + (a >> 13 & 1u)) >> 13;  /* rebias; round on the dropped bits */
  return (unsigned short)((a >= 0x47800000u ? big : a < 0x38800000u ? sub : norm) | (u >> 16 & 0x8000u));
}
static inline float f16_round(float f) { return f16_to_f32(f32_to_f16(f)); }
/* bfloat16 is the top half of a float32 */
static inline float bf16_to_f32(unsigned short h) { return u2f((unsigned int)h << 16); }
static inline unsigned short f32_to_bf16(float f) {
  unsigned int u = f2u(f), h = u >> 16;
  unsigned int nan = h | ((h & 0x7fu) ? 0u : 0x40u);  /* keep a nan a nan */
  return (unsigned short)((u & 0x7fffffffu) > 0x7f800000u ? nan : (u + 0x7fffu + (h & 1u)) >> 16);
}
static inline float bf16_round(float f) { return bf16_to_f32(f32_to_bf16(f)); }
/* float -> int as the reference on x86: nan/inf -> 0; a finite value out of range of the
   conversion numpy uses (32-bit below 4-byte unsigned, else 64-bit) gives its minimum */
static inline i64 f2i(F2I_T x) {
  return x != x || isinf(x) ? 0 : x >= 0x1p63 || x < -0x1p63 ? I64_MIN : (i64)x;
}
static inline int f2i32(F2I_T x) {
  return x != x || isinf(x) ? 0 : x >= 0x1p31 || x <= -0x1p31 - 1 ? INT_MIN : (int)x;
}
#if HAS_F64
/* double -> float16/bfloat16 rounding once: round to odd into float (13 or 16 spare
   bits), then to nearest even */
static inline float round_odd_f(double d) {
  float f = (float)d;
  unsigned int u = f2u(f);
  if (f == f && (double)f != d) u = (fabs((double)f) > fabs(d) ? u - 1 : u) | 1u;
  return u2f(u);
}
static inline float f16_round_d(double d) { return f16_round(round_odd_f(d)); }
static inline float bf16_round_d(double d) { return bf16_round(round_odd_f(d)); }
#endif
"""


# gcc 12 unrolls an innermost loop of up to 16 iterations completely, then vectorizes the
# loop around it over the copies as interleaved groups, and there it miscompiled a
# comparison of a select's result (`max(x, t) != t ? g : 0`, a ReLU's backward testing
# its output for 0; rows of 3, 5, 7 or 15: wrong values, no error). Kept a loop
# (Dialect.keep_loop_pragma) it vectorizes as one. (The flags that stop that unrolling
# everywhere crashed other kernels and halved the GEMM.)
SHORT_LOOP = 16


@dataclass(frozen=True)
class Dialect:
    """What one C-family language needs to say differently. Loops-style dialects leave
    the thread fields None; work-item dialects name their indices and barrier."""
    prelude: str  # typedefs and helpers before HELPERS (see above)
    kernel: str = ""  # qualifier before the function's return type ("__kernel")
    buffer: str = ""  # address space of buffer parameters ("__global ")
    err_store: str = "*err = 1;"  # flags an out-of-range index; racing stores of 1 are benign
    float_suffix: str = "f"  # float32 math names: "f" for C's expf; "" where names are overloaded
    parallel_pragma: str | None = None  # loops-style: the pragma that shares a loop among threads
    simd_pragma: str | None = None  # loops-style: the pragma that asks to vectorize a loop
    # loops-style: the pragma that keeps a short innermost loop a loop (see SHORT_LOOP)
    keep_loop_pragma: str | None = None
    # after a local array's declaration: its alignment, stated (gcc 12 put a short one,
    # kept in memory by a loop it did not unroll, in the red zone and stored to it with
    # aligned vector moves that were not: a segfault)
    array_attr: str = ""
    global_id: str | None = None  # work-item style: this item's index in the whole launch
    group_id: str | None = None  # ... its work-group's index
    local_id: str | None = None  # ... its index within the group
    local: str | None = None  # qualifier of work-group shared memory; None if there is none
    barrier: str | None = None  # a work-group barrier over local memory


_HALF = {dtypes.float16: "f16", dtypes.bfloat16: "bf16"}
_MATH = {Op.EXP2: "exp2", Op.LOG2: "log2", Op.SIN: "sin", Op.SQRT: "sqrt", Op.TRUNC: "trunc"}
# results that need no rounding to a half dtype: exact on representable values, or rounded already
_NO_ROUND = frozenset({Op.NEG, Op.MAX, Op.WHERE, Op.TRUNC, Op.MOD, Op.IDIV, Op.CMPLT, Op.CMPNE, Op.CAST})


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


def _fn(name: str, dt: DType, d: Dialect) -> str:
    return name if dt is dtypes.float64 else name + d.float_suffix


def _literal(value, dt: DType) -> str:
    v = np.array(value, dtype=dt.np)  # the reference's conversion of a CONST
    if dt.is_bool:
        return "1" if v else "0"
    if dt.is_int:
        i = int(v)
        return "(-9223372036854775807L - 1)" if i == -2**63 else f"(({dt.ctype}){i}L)"
    f = float(v)
    if math.isnan(f):
        return "NAN"
    if math.isinf(f):
        return "INFINITY" if f > 0 else "(-INFINITY)"
    text = f.hex() + ("" if dt is dtypes.float64 else "f")
    return f"({text})" if text.startswith("-") else text


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
        if not src.is_float:
            return f"(({dst.ctype}){x})"
        narrow = dst.itemsize < 4 or dst is dtypes.int32
        return f"(({dst.ctype}){'f2i32' if narrow else 'f2i'}({x}))"
    if dst in _HALF and src is dtypes.float64:
        return f"{_HALF[dst]}_round_d({x})"  # one rounding, as numpy (and ml_dtypes >= 0.7) do
    return _round(dst, f"(({_ct(dst)}){x})")


def _unary(op: Op, dt: DType, x: str, d: Dialect) -> str:
    if op is Op.NEG and not dt.is_bool:
        return f"(-{x})"
    if op in _MATH and dt.is_float:
        return f"{_fn(_MATH[op], dt, d)}({x})"
    if op is Op.RECIP:
        if dt.is_float:
            return f"({'1.0' if dt is dtypes.float64 else '1.0f'} / {x})"
        if dt.kind == "i":  # floor(1 / x), 0 for x == 0, as the reference's floor_divide
            return f"({x} == 0 ? 0 : {x} == 1 ? 1 : {x} < 0 ? -1 : 0)"
        return f"({x} == 1)"
    raise TypeError(f"C-family renderer: {op.name} is not defined for {dt.name}")


def _binary(op: Op, dt: DType, a: str, b: str, d: Dialect) -> str:
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
        return f"{_fn('fmod', dt, d)}({a}, {b})"
    if op is Op.IDIV and dt.is_float:  # numpy rounds the quotient to the dtype before trunc
        return f"{_fn('trunc', dt, d)}({_round(dt, f'{a} / {b}')})"
    if dt.is_int:  # x86 traps on x / 0 and INT_MIN / -1: the reference gives 0 and -x
        if op is Op.MOD:
            return f"(({b} == 0{f' || {b} == -1' if signed else ''}) ? 0 : {a} % {b})"
        if op is Op.IDIV:
            return f"({b} == 0 ? 0 : {f'{b} == -1 ? -{a} : ' if signed else ''}{a} / {b})"
        # shifts by >= the width give 0 (or -1 for a negative signed value), as numpy
        in_width = f"(u64){b} < {bits}"
        if op is Op.SHL:
            return f"({in_width} ? ({dt.ctype})((u64){a} << {b}) : 0)"
        if op is Op.SHR:
            return f"({in_width} ? {a} >> {b} : {f'({a} < 0 ? -1 : 0)' if signed else '0'})"
    raise TypeError(f"C-family renderer: {op.name} is not defined for {dt.name}")


# --- emission ------------------------------------------------------------------------

def _indent(lines: list) -> list:
    return ["  " + line for line in lines]


def _cost(node: KNode, memo: dict) -> int:
    """Inner-loop iterations needed for one element of `node` (reduces multiply)."""
    if id(node) not in memo:
        cost = max((_cost(s, memo) for s in node.src), default=1)
        if node.op in REDUCE:
            cost *= math.prod(node.src[0].shape[a % len(node.shape)] for a in set(node.arg))
        memo[id(node)] = max(cost, 1)
    return memo[id(node)]


class _Block:
    """A C block: its lines, the values computed in it, the variables it defines (a loop
    counter, a checked gather index) and whether it is a guard nothing may leave."""

    def __init__(self, defines=(), guard: bool = False, reduce_loop: bool = False):
        self.lines: list = []
        self.reduce_loop = reduce_loop  # a reduce's loop: work-items may diverge in it
        self.cache: dict = {}
        self.defines = set(defines)
        self.guard = guard
        self.stmts = self.loops = 0
        self.nest = 0  # perfectly nested loop depth of the one loop this block may hold


class _Emitter:
    """Emits C into a stack of blocks. A value goes into the outermost block where it is
    valid: below every block defining a variable its index uses, and below the innermost
    guard. So loop-invariant work (say a row max under a broadcast) is hoisted out of
    inner loops, and a value is cached where it is visible to all later uses."""

    def __init__(self, dialect: Dialect):
        self.d = dialect
        self.blocks = [_Block()]
        self.count = 0

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def line(self, *lines: str) -> None:
        self.blocks[-1].lines.extend(lines)
        self.blocks[-1].stmts += 1

    def tmp(self, ctype: str, expr: str, prefix: str = "t") -> str:
        name = self.fresh(prefix)
        self.line(f"{ctype} {name} = {expr};")
        return name

    def home(self, names: frozenset) -> int:
        """Depth of the block where a value depending on variables `names` belongs."""
        for k in reversed(range(len(self.blocks))):
            if self.blocks[k].guard or self.blocks[k].defines & names:
                return k
        return 0

    def cached(self, key):
        for b in reversed(self.blocks):
            if key in b.cache:
                return b.cache[key]
        return None

    @contextmanager
    def at(self, depth: int):
        """Emit into the block at `depth` for a while, as if the deeper ones were not open."""
        deeper = self.blocks[depth + 1:]
        del self.blocks[depth + 1:]
        try:
            yield self.blocks[-1]
        finally:
            self.blocks.extend(deeper)

    @contextmanager
    def block(self, head: str, guard: bool = False):
        """A nested block opened by `head` (e.g. "if (c) {"), closed on exit."""
        b = _Block(guard=guard)
        self.blocks.append(b)
        try:
            yield b
        finally:
            self.blocks.pop()
        self.line(head, *_indent(b.lines), "}")

    @contextmanager
    def loop(self, name: str, n, parallel: int = 0, simd: str | None = None, start="0", step="1",
             reduce_loop: bool = False):
        """for name in range(start, n, step). parallel: collapse up to that many perfectly
        nested loops into one the dialect shares among threads; simd: clauses of a
        vectorize pragma, added if the body has no loop."""
        b = _Block({name}, reduce_loop=reduce_loop)
        self.blocks.append(b)
        try:
            yield b
        finally:
            self.blocks.pop()
        depth = 1 + (b.nest if b.stmts == 0 and b.loops == 1 else 0)
        pragma = []
        if parallel and self.d.parallel_pragma:
            k = min(parallel, depth)
            pragma = [self.d.parallel_pragma + (f" collapse({k})" if k > 1 else "")]
        elif simd is not None and b.loops == 0 and self.d.simd_pragma:
            pragma = [self.d.simd_pragma + simd]
        elif b.loops == 0 and self.d.keep_loop_pragma and str(n).isdigit() and str(start).isdigit() and \
                int(n) - int(start) <= SHORT_LOOP:
            pragma = [self.d.keep_loop_pragma]
        parent = self.blocks[-1]
        inc = f"{name}++" if step == "1" else f"{name} += {step}"
        head = f"for (i64 {name} = {start}; {name} < {n}; {inc}) {{"
        parent.lines += pragma + [head] + _indent(b.lines) + ["}"]
        parent.loops += 1
        parent.nest = depth


def _collapse(sizes: list, limit: int) -> int:
    """Outer loops (at most `limit`) to share among threads: enough iterations to balance,
    but the innermost loop stays out so it remains simple to vectorize."""
    k, count = 1, sizes[0]
    while count < 64 and k < min(len(sizes) - 1, limit):
        count, k = count * sizes[k], k + 1
    return k


class _Renderer:
    def __init__(self, dialect: Dialect, caps: dict):
        self.d, self.em = dialect, _Emitter(dialect)
        self.costs: dict = {}
        self.tile = None  # (innermost output loop variable, its block) when that loop is tiled
        self.wide_acc = caps.get("float64", True)  # float32 sums accumulate in double
        self.group = None  # work-group size when each group computes one output element
        self.local_decls: list = []  # local-memory arrays, declared at function scope
        self.launch = ((1,), None)  # (global size, local size)

    def value(self, node: KNode, idx: list) -> str:
        """C expression (a temporary or a literal) for `node` at index `idx`."""
        key = (node, tuple(idx))
        depth = self.em.home(frozenset().union(*(i.names() for i in idx)))
        with self.em.at(depth) as b:
            got = self.em.cached(key)
            if got is None:
                got = b.cache[key] = self._eval(node, idx)
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
        raise NotImplementedError(f"C-family renderer: {op!r} cannot appear inside a kernel AST"
                                  + (" (only as its root)" if op is Op.SCATTER_ADD else ""))

    def _elementwise(self, node: KNode, vals: list) -> str:
        op, dt, src = node.op, node.dtype, node.src[0].dtype
        if op is Op.BITCAST:  # reinterpret the stored bits
            pun = self.em.fresh("u")  # a union is the one type pun both C and OpenCL C allow
            self.em.line(f"union {{ {src.ctype} a; {dt.ctype} b; }} {pun}; {pun}.a = {_store(src, vals[0])};")
            return self.em.tmp(_ct(dt), _load(dt, f"{pun}.b"))
        if op is Op.CAST:
            expr = _cast(src, dt, vals[0])
        elif op is Op.WHERE:
            expr = f"({vals[0]} ? {vals[1]} : {vals[2]})"
        elif op in BINARY:
            expr = _binary(op, src, *vals, self.d)
        else:
            expr = _unary(op, dt, vals[0], self.d)
        if op not in _NO_ROUND:
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
        with self.em.block(f"if ({' && '.join(conds)}) {{", guard=True):  # only read where valid
            self.em.line(f"{out} = {self.value(src, inner)};")
        return out

    def _reduce(self, node: KNode, idx: list) -> str:
        src, dt, em = node.src[0], node.dtype, self.em
        axes = sorted({a % len(node.shape) for a in node.arg})
        is_sum = node.op is Op.SUM
        if any(src.shape[a] == 0 for a in axes):
            return _literal(0 if is_sum else min_value(dt), dt)
        wide = dt is dtypes.float64 or (dt is dtypes.float32 and self.wide_acc)
        acc_t = "double" if is_sum and wide else _ct(dt)
        init = "0" if is_sum else _literal(min_value(dt), dt)
        acc = em.fresh("acc")

        def combine(a: str, b: str) -> str:
            return (f"({a} | {b})" if dt.is_bool else f"({a} + {b})") if is_sum else _max(a, b, dt)

        if self.group and not any(b.reduce_loop for b in em.blocks):
            return self._group_reduce(node, idx, axes, acc, acc_t, init, combine)
        rvars = {a: var(em.fresh("r"), src.shape[a]) for a in axes}
        inner = [rvars.get(k, i) for k, i in enumerate(idx)]
        inner, rvars = _merge_reduce_dims(src, inner, rvars, em.fresh)
        loops = [r for r in rvars.values() if isinstance(r, Var)]
        inners = [inner]
        phased = _phases(src, inner, loops[-1], em.fresh) if is_sum and loops else None
        if phased:
            loops[-1], inners = phased

        def accumulate(a: str) -> None:
            for inner in inners:
                v = self.value(src, inner)
                em.line(f"{a} {'|' if dt.is_bool else '+'}= {v};" if is_sum else f"{a} = {_max(a, v, dt)};")

        if not phased and self._tiles(src, idx, inner, loops):
            # one accumulator per position of the tiled output loop, which runs innermost
            # here, so the accumulation vectorizes and reads along it
            lv = self.tile[0]
            with em.at(len(em.blocks) - 2):  # the block around the output loop over lv
                em.line(f"{acc_t} {acc}[{lv.n}]{self.d.array_attr};")
                with em.loop(lv.name, lv.n, simd=""):
                    em.line(f"{acc}[{lv.name}] = {init};")
                with ExitStack() as stack:
                    for r in loops:
                        stack.enter_context(em.loop(r.name, r.n, reduce_loop=True))
                    stack.enter_context(em.loop(lv.name, lv.n, simd=""))
                    accumulate(f"{acc}[{lv.name}]")
            acc = f"{acc}[{lv.name}]"
        elif is_sum and not dt.is_bool and not phased and self._tile_between(src, idx, inner, loops):
            # the tiled output loop between the outer reduce loops and the innermost one,
            # so a tile's rows are read one after another (a BatchNorm sum over N, H, W of
            # NCHW data: runs of tile x H*W floats, not H*W, which the prefetchers lose
            # at every 4 KB page)
            lv = self.tile[0]
            part = em.fresh("part")
            with em.at(len(em.blocks) - 2):
                em.line(f"{acc_t} {acc}[{lv.n}]{self.d.array_attr};")
                with em.loop(lv.name, lv.n, simd=""):
                    em.line(f"{acc}[{lv.name}] = {init};")
                with ExitStack() as stack:
                    for r in loops[:-1]:
                        stack.enter_context(em.loop(r.name, r.n, reduce_loop=True))
                    stack.enter_context(em.loop(lv.name, lv.n))
                    em.line(f"{acc_t} {part} = {init};")
                    with em.loop(loops[-1].name, loops[-1].n, simd=f" reduction(+:{part})", reduce_loop=True):
                        accumulate(part)
                    em.line(f"{acc}[{lv.name}] += {part};")
            acc = f"{acc}[{lv.name}]"
        else:
            em.line(f"{acc_t} {acc} = {init};")
            # a sum's order is ours to choose: let the innermost loop vectorize. So is a
            # float max's, with nan tracked apart: the vector max instructions drop nans
            nan = em.fresh("nan") if not is_sum and dt.is_float and self.d.simd_pragma else None
            if nan:
                em.line(f"unsigned char {nan} = 0;")
                simd = f" reduction(max:{acc}) reduction(|:{nan})"
            else:
                simd = f" reduction({'|' if dt.is_bool else '+'}:{acc})" if is_sum else None
            with ExitStack() as stack:
                for k, r in enumerate(loops):
                    last = k == len(loops) - 1
                    stack.enter_context(em.loop(r.name, r.n, simd=simd if last else None, reduce_loop=True))
                if nan:
                    v = self.value(src, inner)
                    em.line(f"{nan} |= ({v} != {v});", f"{acc} = ({acc} > {v} ? {acc} : {v});")
                else:
                    accumulate(acc)
            if nan:
                acc = f"({nan} ? NAN : {acc})"
        return em.tmp(_ct(dt), _round(dt, f"(({_ct(dt)}){acc})"))

    def _group_reduce(self, node: KNode, idx: list, axes: list, acc: str, acc_t: str, init: str,
                      combine) -> str:
        """A reduce split across the work-group: each item accumulates every L-th element
        of the flattened reduced axes, then the partial results are combined pairwise in
        local memory. Only called outside any reduce loop, where control flow depends on
        the output index alone and so is the same for the whole group (barriers are safe)."""
        src, dt, em, size = node.src[0], node.dtype, self.em, self.group
        sizes = [src.shape[a] for a in axes]
        r = Var(em.fresh("r"), math.prod(sizes))
        inner = list(idx)
        for a, i in zip(axes, unravel(r, sizes)):
            inner[a] = i
        em.line(f"{acc_t} {acc} = {init};")
        with em.loop(r.name, r.n, start="lid", step=str(size), reduce_loop=True):
            em.line(f"{acc} = {combine(acc, self.value(src, inner))};")
        part = em.fresh("part")
        self.local_decls.append(f"{self.d.local} {acc_t} {part}[{size}];")
        em.line(f"{part}[lid] = {acc};", self.d.barrier,
                f"for (int s = {size // 2}; s > 0; s >>= 1) {{",
                f"  if (lid < s) {part}[lid] = {combine(f'{part}[lid]', f'{part}[lid + s]')};",
                f"  {self.d.barrier}", "}")
        return em.tmp(_ct(dt), _round(dt, f"(({_ct(dt)}){part}[0])"))

    def _tile_var(self, idx: list, loops: list, min_loops: int):
        """The tiled output loop's variable where a reduce with at least `min_loops` loops
        is evaluated directly in that loop and its index uses no other variable defined
        there (a gather index computed inside it), else None."""
        if self.tile is None or len(loops) < min_loops or self.em.blocks[-1] is not self.tile[1]:
            return None
        lv, block = self.tile
        return lv if block.defines & frozenset().union(*(i.names() for i in idx)) == {lv.name} else None

    def _tiles(self, src: KNode, idx: list, inner: list, loops: list) -> bool:
        """Whether to run a reduce with the tiled output loop innermost: only where it is
        evaluated directly in that loop, and where its loads then read more contiguously."""
        lv = self._tile_var(idx, loops, 1)
        if lv is None or any(n.op in REDUCE for n in src.toposort()):
            return False  # (a row's max inside a row's sum: hoisted above the reduce loop, not in it)
        addrs = _loads(src, inner)
        good_l = sum(stride(a, lv.name) in (0, 1) for a in addrs)
        good_r = sum(stride(a, loops[-1].name) in (0, 1) for a in addrs)
        return good_l > good_r

    def _tile_between(self, src: KNode, idx: list, inner: list, loops: list) -> bool:
        """Whether a sum evaluated directly in the tiled output loop reads memory in
        order with that loop between its outer reduce loops and its innermost one: every
        load contiguous (or constant) along the innermost, a tile's span within one
        step of each outer loop, and the innermost run shorter than that step."""
        lv = self._tile_var(idx, loops, 2)
        if lv is None:
            return False
        ordered = False
        for a in _loads(src, inner):
            s_in, s_lv = stride(a, loops[-1].name), stride(a, lv.name)
            outer = [stride(a, r.name) for r in loops[:-1]]
            if s_in not in (0, 1) or s_lv is None or s_lv < 0 or any(o is None for o in outer):
                return False
            if s_lv and any(o and abs(o) < s_lv * lv.n for o in outer):
                return False
            ordered |= s_in == 1 and s_lv >= loops[-1].n
        return ordered

    def _gather(self, node: KNode, idx: list) -> str:
        x, index = node.src
        if not index.dtype.is_int:
            raise TypeError(f"C-family renderer: GATHER index must be an integer dtype, got {index.dtype.name}")
        axis = node.arg % len(node.shape)
        n = x.shape[axis]
        g = self._index(index, idx)
        self.em.line(f"if ({g} < 0 || {g} >= {n}) {{ {self.d.err_store} {g} = 0; }}")
        if n == 0:  # nothing may be read
            return _literal(0, node.dtype)
        return self.value(x, [var(g, n) if k == axis else i for k, i in enumerate(idx)])

    def _index(self, index: KNode, idx: list) -> str:
        """A data-dependent index as a variable, declared where its value belongs."""
        v = self.value(index, idx)
        with self.em.at(self.em.home(frozenset().union(*(i.names() for i in idx)))) as b:
            g = self.em.tmp("i64", f"(i64){v}", "g")
            b.defines.add(g)
        return g

    # --- top-level loop nests ---------------------------------------------------------

    def open_loops(self, shape: tuple, prefix: str, work: int, order=None, shared=None) -> tuple:
        """Open loops over `shape` (in `order` of dims); the outer ones (at most `shared`
        of them) are shared among threads: as a parallel loop if `work` is large, or in a
        work-item dialect as the launch's items (or groups). Returns the stack that closes
        the loops and the index variables."""
        ivars = [var(f"{prefix}{k}", n) for k, n in enumerate(shape)]
        dims = [k for k in (order or range(len(shape))) if isinstance(ivars[k], Var)]
        limit = len(dims) if shared is None else shared
        stack = ExitStack()
        if self.d.global_id is not None:
            outer, dims = dims[:limit], dims[limit:]
            self._items([ivars[k] for k in outer])
        else:
            parallel = _collapse([shape[k] for k in dims], limit) if limit and work >= PARALLEL_WORK else 0
            for j, k in enumerate(dims):
                stack.enter_context(self.em.loop(ivars[k].name, shape[k], parallel=parallel if j == 0 else 0))
            return stack, ivars
        for k in dims:
            stack.enter_context(self.em.loop(ivars[k].name, shape[k]))
        return stack, ivars

    def _items(self, ivars: list) -> None:
        """Define the variables `ivars` from the work-item's (or its group's) index and
        set the launch size: one item, or one group of self.group items, per position."""
        n = math.prod(v.n for v in ivars)
        if self.group:
            self.em.line(f"i64 lid = {self.d.local_id};", f"i64 gid = {self.d.group_id};")
            self.launch = ((n * self.group,), (self.group,))
        else:
            self.em.line(f"i64 gid = {self.d.global_id};", f"if (gid >= {n}) return;")
            self.launch = ((n,), None)
        for v, e in zip(ivars, unravel(Var("gid", n), [v.n for v in ivars])):
            self.em.line(f"i64 {v.name} = {e.render()};")

    def _group_size(self, node: KNode, shape: tuple, caps: dict) -> int | None:
        """Items per work-group when few outputs each reduce many values, else None."""
        reduces = [n for n in node.toposort() if n.op in REDUCE]
        longest = max((_cost(n, self.costs) for n in reduces), default=0)
        if self.d.local is None or longest < GROUP_REDUCE_MIN or math.prod(shape) > GROUP_OUTPUTS_MAX:
            return None
        size = 1 << (min(256, caps.get("max_local_size", 1)).bit_length() - 1)  # a power of two
        if size < 2 or 8 * size * len(reduces) > caps.get("local_memory", 0):
            return None
        return size

    def write(self, node: KNode, shape: tuple, dt: DType, caps: dict) -> None:
        """out[i] = node[i] for every index i of `shape`. With loops, where a reduce may
        run below, the last dim (of those that are not 1) is split in tiles, so that a
        reduce can run with the tile loop innermost."""
        if 0 in shape:
            return
        if self.d.global_id is not None:
            self.group = self._group_size(node, shape, caps)
            stack, ivars = self.open_loops(shape, "i", 0)
            with stack:
                v = self.value(node, ivars)
                store = f"out[{linearize(ivars, shape).render()}] = {_store(dt, v)};"
                self.em.line(f"if (lid == 0) {store}" if self.group else store)
            return
        reduces = bool(shape) and any(n.op in REDUCE for n in node.toposort())
        core = len(shape)  # the dims tiled over: a keepdim reduce's trailing 1s are constants
        while reduces and core > 1 and shape[core - 1] == 1:
            core -= 1
        size = _tile(shape[core - 1]) if reduces else 0
        cuts = None if size or len(shape) < 2 else _pad_cuts(node, shape)
        if cuts:
            self._write_segments(node, shape, dt, cuts)
            return
        if not size and len(shape) >= 2:
            ivars = [var(f"i{k}", n) for k, n in enumerate(shape)]
            phased = _phases(node, ivars, ivars[-1], self.em.fresh) if isinstance(ivars[-1], Var) else None
            if phased:
                self._write_phases(node, shape, dt, *phased)
                return
        if size and math.prod(shape[:core]) // size == 1 and size % (SPLIT * 8) == 0:
            size //= SPLIT  # else the whole reduce runs on one thread, inside one tile
        loop_shape = shape[:core - 1] + (shape[core - 1] // size, size) if size else shape
        stack, ivars = self.open_loops(loop_shape, "i", math.prod(shape) * _cost(node, self.costs))
        if size:
            self.tile = (ivars[-1], self.em.blocks[-1])
            ivars = ivars[:-2] + [ivars[-2] * size + ivars[-1]] + [Const(0)] * (len(shape) - core)
        with stack:
            v = self.value(node, ivars)
            self.em.line(f"out[{linearize(ivars, shape).render()}] = {_store(dt, v)};")
        self.tile = None

    def _write_phases(self, node: KNode, shape: tuple, dt: DType, q: Var, idxs: list) -> None:
        """write() with the innermost loop over q and one body per phase (see _phases)."""
        stack, _ = self.open_loops(shape[:-1], "i", math.prod(shape) * _cost(node, self.costs))
        with stack, self.em.loop(q.name, q.n):
            for idx in idxs:
                v = self.value(node, idx)
                self.em.line(f"out[{linearize(idx, shape).render()}] = {_store(dt, v)};")

    def _write_segments(self, node: KNode, shape: tuple, dt: DType, cuts: list) -> None:
        """write() with the innermost loop split at `cuts`: one loop per range, in which
        every PAD guard on that dim is known true or false, so the guards (and often the
        // and % of the address) vanish and the loop vectorizes (a concatenation: W3's
        q, k and v gradients into one, 3 branches and a // and % per element)."""
        stack, ivars = self.open_loops(shape[:-1], "i", math.prod(shape) * _cost(node, self.costs))
        name = f"i{len(shape) - 1}"
        with stack:
            for lo, hi in zip([0] + cuts, cuts + [shape[-1]]):
                with self.em.loop(name, hi - lo):
                    idx = ivars + [var(name, hi - lo) + lo]
                    v = self.value(node, idx)
                    self.em.line(f"out[{linearize(idx, shape).render()}] = {_store(dt, v)};")

    def scatter_add(self, node: KNode, caps: dict) -> None:
        """out = base, then out[.. idx[j] ..] += val[j] for every j, in order along the axis.
        Positions off the axis never collide, so they are shared among threads; along the
        axis, values accumulate in order."""
        base, index, val = node.src
        if not index.dtype.is_int:
            raise TypeError(f"C-family renderer: SCATTER_ADD index must be an integer dtype, got {index.dtype.name}")
        dt, shape = node.dtype, index.shape
        axis = node.arg % len(shape)
        free = [k for k in range(len(shape)) if k != axis and shape[k] > 1]
        if self.d.global_id is not None:  # one item per off-axis position: its copy, then its sums
            if 0 in node.shape:
                return
            line = tuple(1 if k == axis else n for k, n in enumerate(node.shape))
            stack, ivars = self.open_loops(line, "i", 0, free, shared=len(free))
            with stack:
                k = var(self.em.fresh("k"), node.shape[axis])
                with self.em.loop(k.name, k.n) if isinstance(k, Var) else ExitStack():
                    at = [k if d == axis else i for d, i in enumerate(ivars)]
                    self.em.line(f"out[{linearize(at, node.shape).render()}] = {_store(dt, self.value(base, at))};")
                if 0 in shape:
                    return
                j = var(self.em.fresh("j"), shape[axis])
                with self.em.loop(j.name, j.n) if isinstance(j, Var) else ExitStack():
                    self._scatter_one(node, [j if d == axis else i for d, i in enumerate(ivars)])
            return
        self.write(base, node.shape, dt, caps)
        if 0 in shape:
            return
        work = math.prod(shape) * max(_cost(index, self.costs), _cost(val, self.costs))
        last = free[-1] if free and free[-1] > axis else None
        size = _scatter_block(shape[last]) if last is not None else 0
        if not size:
            stack, jvars = self.open_loops(shape, "j", work, free + [axis], shared=len(free))
            with stack:
                self._scatter_one(node, jvars)
            return
        # the innermost off-axis dim in blocks: threads share the blocks, and a block's
        # positions run innermost, below the axis, so consecutive steps read consecutive
        # memory (the axis outside them read a column at a time: W3's token-embedding
        # gradient 290 -> 101 us)
        split = shape[:last] + (shape[last] // size, size) + shape[last + 1:]
        at = lambda k: k if k < last else k + 1
        order = [at(k) for k in free[:-1]] + [last, at(axis), last + 1]
        stack, jv = self.open_loops(split, "j", work, order, shared=len(free))
        jvars = jv[:last] + [jv[last] * size + jv[last + 1]] + jv[last + 2:]
        with stack:
            self._scatter_one(node, jvars)

    def _scatter_one(self, node: KNode, jvars: list) -> None:
        """out[.. idx[j] ..] += val[j] at the one index j."""
        _, index, val = node.src
        dt, axis, n = node.dtype, node.arg % len(jvars), node.shape[node.arg % len(jvars)]
        g = self._index(index, jvars)
        self.em.line(f"if ({g} < 0 || {g} >= {n}) {self.d.err_store}")
        with self.em.block("else {", guard=True):
            at = [var(g, n) if k == axis else j for k, j in enumerate(jvars)]
            addr = linearize(at, node.shape).render()
            total = _binary(Op.ADD, dt, _load(dt, f"out[{addr}]"), self.value(val, jvars), self.d)
            self.em.line(f"out[{addr}] = {_store(dt, total)};")


MAX_SEGMENTS = 8


def _pad_cuts(node: KNode, shape: tuple) -> list | None:
    """Positions along the innermost output dim where a PAD guard in `node` changes (the
    guard reads that dim as i + c), if there are any and at most MAX_SEGMENTS ranges;
    else None. Only through elementwise and movement ops (and a gather's index)."""
    idx = [var(f"i{k}", n) for k, n in enumerate(shape)]
    last, n = idx[-1], shape[-1]
    if not isinstance(last, Var):
        return None
    cuts = set()
    for nd, at in _indexed(node, idx):
        if nd.op in REDUCE:
            return None
        if nd.op is Op.PAD:
            for (before, _), i, m in zip(nd.arg, at, nd.src[0].shape):
                off = i - before - last
                if isinstance(off, Const) and i.names() == last.names():
                    cuts |= {c for c in (-off.v, m - off.v) if 0 < c < n}
    return sorted(cuts) if cuts and len(cuts) < MAX_SEGMENTS else None


def _scatter_block(n: int) -> int:
    """Block length for a scatter's innermost off-axis dim of n (0: none): a divisor of n
    from 16 to 256 that leaves at least two blocks to share."""
    return next((b for b in range(min(256, n // 2), 15, -1) if n % b == 0), 0)


def _tile(n: int) -> int:
    """Tile length for an output loop of n: n itself if short, else its largest divisor
    that keeps a tile of accumulators small (0: no good one)."""
    if n <= TILE:
        return n if n > 1 else 0
    return next((d for d in range(TILE, TILE // 8 - 1, -1) if n % d == 0), 0)


def _loads(node: KNode, idx: list) -> list:
    """Addresses of the LOADs that evaluating `node` at `idx` reads (reduced axes and
    gathered positions as fresh variables)."""
    if node.op is Op.LOAD:
        return [linearize(idx, node.shape)]
    if node.op in REDUCE:
        axes = {a % len(node.shape) for a in node.arg}
        idx = [Var(f"_r{k}", n) if k in axes else i for k, (i, n) in enumerate(zip(idx, node.src[0].shape))]
    elif node.op is Op.PAD:
        idx = [i - before for i, (before, _) in zip(idx, node.arg)]
    elif node.op in MOVEMENT:
        idx = _move(node, idx)
    elif node.op is Op.GATHER:
        axis = node.arg % len(idx)
        return _loads(node.src[1], idx) + _loads(node.src[0], [Var("_g", 1 << 62) if k == axis else i
                                                               for k, i in enumerate(idx)])
    return [a for s in node.src for a in _loads(s, idx)]


def _merge_reduce_dims(src: KNode, inner: list, rvars: dict, fresh) -> tuple:
    """Adjacent reduced dims that every load reads as one run become one loop (a BatchNorm
    sum over (N, H, W) of NCHW data: one loop over H*W instead of an inner loop of W,
    whose vectorized reduction is set up and folded once per W elements). A run is
    merged only where no address would need // or % of the merged variable."""
    axes = sorted(rvars)
    for end in reversed(range(len(axes))):
        start = end
        while start > 0 and axes[start - 1] == axes[start] - 1:
            start -= 1
        run = axes[start:end + 1]
        if len(run) < 2 or any(not isinstance(rvars.get(a), Var) for a in run):
            continue
        sizes = [rvars[a].n for a in run]
        merged = var(fresh("r"), math.prod(sizes))
        trial, step = list(inner), 1
        for a, n in zip(reversed(run), reversed(sizes)):
            trial[a] = (merged // step) % n if a != run[0] else merged // step
            step *= n
        if _affine_loads(src, trial, merged.name):
            inner = trial
            rvars = {a: r for a, r in rvars.items() if a not in run[1:]}
            rvars[run[0]] = merged
    return inner, rvars


def _phases(src: KNode, idx: list, r: Var, fresh) -> tuple | None:
    """(q, [idx with r = m*q + p for each phase p < m]) where some load under `src` reads
    along variable `r` through (r + c) // m and % m (a strided convolution's input
    gradient, stored as m x m phases) and every load is affine in q once r = m*q + p for
    a fixed p: a loop over q with one copy of the body per phase reads affine runs and
    vectorizes (W2: BatchNorm kernels before its stride-2 convolution, ~5 ms each as
    scalar code). None otherwise."""
    if all(stride(a, r.name) is not None for a in _loads(src, idx)) or \
            sum(r.name in e.names() for e in idx) != 1 or r not in idx:
        return None
    for m in (2, 3, 4):
        if r.n % m or r.n // m < 8:
            continue
        q = var(fresh("q"), r.n // m)
        trials = [[q * m + p if e is r else e for e in idx] for p in range(m)]
        if all(_affine_loads(src, t, q.name) for t in trials):
            return q, trials
    return None


def _affine_loads(node: KNode, idx: list, name: str) -> bool:
    """Whether every load under `node`, evaluated at `idx`, reads an address affine in
    variable `name` (no // or % of it), through elementwise and movement ops only."""
    for n, ix in _indexed(node, idx):
        if n.op is Op.LOAD:
            if stride(linearize(ix, n.shape), name) is None:
                return False
        elif n.op not in ELEMENTWISE and n.op is not Op.CONST and (n.op not in MOVEMENT or n.op is Op.PAD):
            return False  # a PAD's guard, a nested reduce, a gather, an iota: keep the loops
    return True


def _indexed(node: KNode, idx: list):
    """Each distinct (node, index) that evaluating `node` at `idx` reaches through
    elementwise and movement ops (PAD: the index into its source) and a gather's index,
    a node before what lies under it; nothing under a reduce."""
    stack, seen = [(node, tuple(idx))], set()
    while stack:
        n, at = stack.pop()
        if (n, at) in seen:
            continue
        seen.add((n, at))
        yield n, at
        if n.op is Op.PAD:
            stack.append((n.src[0], tuple(i - before for i, (before, _) in zip(at, n.arg))))
        elif n.op in MOVEMENT:
            stack.append((n.src[0], tuple(_move(n, list(at)))))
        elif n.op is Op.GATHER:  # its table is read where the data says: only the index
            stack.append((n.src[1], at))
        elif n.op in ELEMENTWISE:
            stack.extend((src, at) for src in n.src)


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
        return _reshape(idx, node.shape, src_shape)
    raise NotImplementedError(f"C-family renderer: no index rule for {op!r}")


def _reshape(idx: list, shape: tuple, src_shape: tuple) -> list:
    """Map each run of output dims onto the run of source dims with the same element
    count on its own: merges and splits then stay affine instead of mixing all dims."""
    if 0 in shape:
        return [Const(0)] * len(src_shape)
    out, i, j, size, src_size, start_i, start_j = [], 0, 0, 1, 1, 0, 0
    while i < len(shape) or j < len(src_shape):
        if i < len(shape) and (size <= src_size or j == len(src_shape)):
            size, i = size * shape[i], i + 1
        else:
            src_size, j = src_size * src_shape[j], j + 1
        if size == src_size:
            out += unravel(linearize(idx[start_i:i], shape[start_i:i]), src_shape[start_j:j])
            start_i, start_j = i, j
    return out


def render(kernel: Kernel, dialect: Dialect, caps: dict | None = None) -> Rendered:
    """Source of the kernel as one function in `dialect`:
    void NAME(OUT* restrict out, const IN0* restrict in0, ..., int* restrict err)
    with the dialect's qualifiers. `err` is set to 1 if a GATHER/SCATTER_ADD index was out
    of range. caps: the device's codegen hints (see runtime/device.py)."""
    caps = caps or {}
    root, r, d = kernel.ast, _Renderer(dialect, caps), dialect
    if root.op is Op.SCATTER_ADD:
        r.scatter_add(root, caps)
    else:
        r.write(root, root.shape, root.dtype, caps)
    params = [f"{d.buffer}{root.dtype.ctype}* restrict out"]
    params += [f"const {d.buffer}{dt.ctype}* restrict in{i}" for i, (dt, _) in enumerate(kernel.inputs)]
    params.append(f"{d.buffer}int* restrict err")
    body = r.local_decls + r.em.blocks[0].lines
    text = "(" + ", ".join(params) + ") {\n" + "\n".join(_indent(body)) + "\n}\n"
    name = _entry_name(kernel.name, text)
    head = f"{d.kernel} void" if d.kernel else "void"
    return Rendered(f"{d.prelude}{HELPERS}\n{head} {name}{text}", name, *r.launch)


def _entry_name(kernel_name: str, text: str, tag: str = "") -> str:
    """A C identifier from the kernel's name (and `tag`) plus a hash of its text."""
    base = (re.sub(r"\W", "_", kernel_name)[:48 - len(tag)] or "kernel") + tag
    return f"{'k_' if base[0].isdigit() else ''}{base}_{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def _reads_in_place(node: KNode, index: int, memo: dict) -> bool:
    """Whether every read of input `index` under `node` is at the output's own linear
    position: reached through elementwise ops and reshapes only (row-major reshapes keep
    positions), with no reduce, gather or scatter anywhere."""
    got = memo.get(id(node))
    if got is None:
        if node.op is Op.LOAD or node.op in (Op.CONST, Op.IOTA):
            got = True
        elif node.op in REDUCE or node.op in (Op.GATHER, Op.SCATTER_ADD):
            got = False
        elif node.op in ELEMENTWISE or node.op is Op.RESHAPE:
            got = all(_reads_in_place(s, index, memo) for s in node.src)
        else:  # another movement: fine unless the input is below it
            got = not any(n.op is Op.LOAD and n.arg == index for n in node.toposort())
        memo[id(node)] = got
    return got


def render_block(kernel: Kernel, rows: int, cols: int, dialect: Dialect) -> Rendered | None:
    """The kernel over one block of its output viewed as a (rows, cols) matrix, for a
    caller that produces its last input block by block (a GEMM's epilogue computed while
    the GEMM's result is in cache):
        void NAME(void *const *args, long r0, long r1, long c0, long c1)
    with args = [out, in0, in1, ...], computing out for rows [r0, r1) and columns
    [c0, c1), serially (the caller's threads share the blocks). None unless the kernel is
    elementwise in its last input (read at the output's own positions), has no gather,
    and the dialect runs loops."""
    root, last = kernel.ast, len(kernel.inputs) - 1
    if dialect.global_id is not None or rows * cols != math.prod(root.shape) or rows * cols == 0 \
            or root.op is Op.SCATTER_ADD or not _reads_in_place(root, last, {}):
        return None
    r, d = _Renderer(dialect, {}), dialect
    view = KNode(Op.RESHAPE, (root,), (rows, cols), root.dtype, (rows, cols))
    ivars = [var("i0", rows), var("i1", cols)]
    with r.em.loop("i0", "r1", start="r0"), r.em.loop("i1", "c1", start="c0", simd=""):
        v = r.value(view, ivars)
        r.em.line(f"out[{linearize(ivars, (rows, cols)).render()}] = {_store(root.dtype, v)};")
    args = [f"{root.dtype.ctype}* restrict out = ({root.dtype.ctype}*)args[0];"]
    args += [f"const {dt.ctype}* restrict in{i} = (const {dt.ctype}*)args[{i + 1}];"
             for i, (dt, _) in enumerate(kernel.inputs)]
    text = "(void *const *args, long r0, long r1, long c0, long c1) {\n" + \
        "\n".join(_indent(args + r.em.blocks[0].lines)) + "\n}\n"
    name = _entry_name(kernel.name, text, "_block")
    return Rendered(f"{d.prelude}{HELPERS}\nvoid {name}{text}", name, (1,), None)
