"""Pattern recognizers: a kernel AST -> a plain description a device may hand to a vendor
library (see "pattern claims" in runtime/device.py). A device never sees a KNode; it gets
one of the frozen dataclasses below, whose fields are plain ints and strings.

A recognizer claims only what it can describe *exactly*: every address an affine
function of the loop variables (no // or % left, no PAD guard, no GATHER), the output
written as the description says. Anything else returns None and runs as generated code.

Gemm: C[p, i, j] = sum_k A[p, i, k] * B[p, k, j] for p < batch, i < m, j < n, k < k.
Matmul is broadcast multiply + SUM (frontend/linalg.py), so its kernel is
    [RESHAPE...] SUM(MUL(movement...(LOAD a), movement...(LOAD b)))
and each LOAD's address, as a function of the SUM's output and reduce variables, tells
which variables are batch (both operands, or neither), rows (a only), cols (b only) and
the contraction (both, reduced). Several variables of one role merge into one where the
strides allow (a reshaped batch, a flattened contraction); a row or col variable that
does not merge becomes a batch variable (the other operand broadcasts in it); else no
claim. Reshapes and permutes between the root and the SUM only move where C is written
(attention's heads back beside the features): the output strides say so. A kernel
whose root is otherwise not the SUM (an epilogue fused after the matmul, or the
matmul inside something bigger) is split: the GEMM into a buffer of its own, and the
rest as a generated kernel that loads it (see recognize).
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import dtypes
from ..graph.ops import MOVEMENT, Op
from .cstyle import _move, _reshape  # the renderer's index rules, so both agree on addresses
from .kernel import Kernel, KNode
from .symbolic import Const, Div, Mod, Sum, Var, _div, _mod, _sum, in_range, linearize, var

GEMM_DTYPES = (dtypes.float32, dtypes.float64)


@dataclass(frozen=True)
class Operand:
    """An input buffer read as a strided (batch, rows, cols) array: input `index` of the
    kernel (launch buffer index + 1), element `offset`, `strides` in elements (any sign;
    0 where it broadcasts; a size-1 dim's stride is meaningless)."""
    index: int
    offset: int
    strides: tuple


@dataclass(frozen=True)
class Gemm:
    """out[p, i, j] = sum over k of a[p, i, k] * b[p, k, j], for batch, m, n, k (all >= 1).
    `out` is the kernel's output buffer at element offset 0 with `out_strides` (elements,
    batch/row/col), possibly not row-major. dtype: "float32" or "float64" for a, b and out.
    epilogue: None, or (program, global_size, local_size) of a program of the device's
    own, to launch on [out, in0, ..., result] after the GEMM wrote `result`, a buffer of
    batch*m*n elements the claimed program allocates (see recognize). epilogue_block:
    None, or a program of the device's own computing that epilogue over one block of
    rows and columns of the (m, n) result, called as f(args, r0, r1, c0, c1) with args =
    [out, in0, ..., result] (given where batch is 1, the result is row-major in (m, n)
    and the renderer can: the GEMM may run it on each block as it finishes it)."""
    kind = "gemm"  # what devices dispatch on (class attribute, not a field)
    dtype: str
    batch: int
    m: int
    n: int
    k: int
    a: Operand
    b: Operand
    out_strides: tuple
    epilogue: tuple | None = None
    epilogue_block: object | None = None


def recognize(kernel: Kernel):
    """(pattern, epilogue) for `kernel`, or None if no part of it is an exact match.

    epilogue None: the pattern computes the kernel's output. Else the pattern is a SUM
    inside the kernel, written row-major to a buffer of its own, and `epilogue` is the
    rest of the kernel: a Kernel with that SUM replaced by a LOAD of one more input
    (the pattern's result), which computes the output from [in0, ..., result]."""
    node, chain = kernel.ast, []
    while node.op in (Op.RESHAPE, Op.PERMUTE):  # the output re-indexed: the GEMM writes it there itself
        chain.append(node)
        node = node.src[0]
    g = gemm(node, chain) or contraction(node, chain)
    if g is not None:
        return g, None
    for n in kernel.ast.toposort():
        g = gemm(n) or contraction(n)
        if g is not None:
            load = KNode(Op.LOAD, (), len(kernel.inputs), n.dtype, n.shape)
            ast = _replace(kernel.ast, n, load, {})
            return g, Kernel(ast, kernel.inputs + ((n.dtype, n.shape),), f"{kernel.name}_epilogue")
    return None


def _replace(node: KNode, old: KNode, new: KNode, memo: dict) -> KNode:
    if node is old:
        return new
    if id(node) not in memo:
        src = tuple(_replace(s, old, new, memo) for s in node.src)
        memo[id(node)] = node if all(a is b for a, b in zip(src, node.src)) else \
            KNode(node.op, src, node.arg, node.dtype, node.shape)
    return memo[id(node)]


def _product_sum(node: KNode):
    """(the MUL, its shape, the summed axes, index vars r*/o*) if `node` is a float SUM of a
    product of two values, the shape every pattern starts from; else None."""
    if node.op is not Op.SUM or node.dtype not in GEMM_DTYPES or node.src[0].op is not Op.MUL:
        return None
    mul = node.src[0]
    shape = mul.shape
    if 0 in shape:
        return None
    axes = {a % len(shape) for a in node.arg}
    return mul, shape, axes, [var(f"{'r' if d in axes else 'o'}{d}", n) for d, n in enumerate(shape)]


def _out_strides(node: KNode, idx: list, axes: set, chain: list) -> dict | None:
    """{output var name: stride} of where the kernel writes SUM `node`'s element at `idx`:
    through `chain`, the RESHAPE and PERMUTE nodes from the kernel's root down to the SUM
    (bijections, so every element is written once), into the root's row-major output.
    None if that address is not affine (a reshape that splits a permuted dim)."""
    pos, shape = [Const(0) if d in axes else v for d, v in enumerate(idx)], node.shape
    for mv in reversed(chain):  # from the SUM up to the root
        pos = [pos[a] for a in mv.arg] if mv.op is Op.PERMUTE else _reshape(pos, shape, mv.shape)
        shape = mv.shape
    found = _affine(_resimplify(linearize(pos, shape)))
    return None if found is None or found[0] != 0 else found[1]


def gemm(node: KNode, chain: tuple = ()) -> Gemm | None:
    """The Gemm that SUM `node` computes, written row-major in its (keepdim) shape, or
    re-indexed by `chain` (see _out_strides)."""
    found = _product_sum(node)
    if found is None:
        return None
    mul, shape, axes, idx = found
    outs = _out_strides(node, idx, axes, chain)
    if outs is None:
        return None
    ops = []
    for src in mul.src:
        addr = _address(src, idx, node.dtype)
        if addr is None:
            return None
        ops.append(addr)
    (ia, offa, sa), (ib, offb, sb) = ops
    roles: dict = {"batch": [], "m": [], "n": [], "k": []}
    for d, v in enumerate(idx):
        if not isinstance(v, Var):
            continue  # a size-1 dim
        in_a, in_b = v.name in sa, v.name in sb
        if d in axes:
            if not (in_a and in_b):
                return None  # summed in one operand only: not a product of matrices
            roles["k"].append(d)
        else:
            roles["batch" if in_a == in_b else "m" if in_a else "n"].append(d)

    def merged(dims: list, tensors: list) -> tuple:
        """(size, strides per tensor) of the innermost of `dims` that merge into one dim,
        and the outer dims that do not."""
        size, strides = 1, [0] * len(tensors)
        for j in reversed(range(len(dims))):
            st = [t.get(idx[dims[j]].name, 0) for t in tensors]
            if size == 1:
                strides = st
            elif any(s != inner * size for s, inner in zip(st, strides)):
                return (size, strides), dims[:j + 1]
            size *= shape[dims[j]]
        return (size, strides), []

    # rows and cols merge in the output's order; a row (col) dim that does not merge with
    # the inner ones becomes a batch dim in which the other operand broadcasts
    (m, (ma, mc)), rest_m = merged(roles["m"], [sa, outs])
    (n, (nb, nc)), rest_n = merged(roles["n"], [sb, outs])
    (batch, (pa, pb, pc)), rest_b = merged(sorted(roles["batch"] + rest_m + rest_n), [sa, sb, outs])
    (k, (ka, kb)), rest_k = merged(roles["k"], [sa, sb])  # the contraction in the source's order
    if rest_b or rest_k:
        return None
    return Gemm(node.dtype.name, batch, m, n, k, Operand(ia, offa, (pa, ma, ka)),
                Operand(ib, offb, (pb, kb, nb)), (pc, mc, nc))


def _address(node: KNode, idx: list, dtype, pad_ok: bool = False):
    """(input index, element offset, {var name: stride}) of the LOAD that a chain of
    movement ops over it reads at `idx`, or None if it is no exactly affine plain load.
    pad_ok: one PAD whose guard does not always hold is allowed; then a 4th item, a
    Padded, says which zero-padded copy the offset and strides address (else None)."""
    while node.op in MOVEMENT:
        if node.op is Op.PAD:  # a plain view only where the guard always holds
            inner = [_resimplify(i - before) for i, (before, _) in zip(idx, node.arg)]
            if any(in_range(i, n) is not True for i, n in zip(inner, node.src[0].shape)):
                return _padded(node, idx, dtype) if pad_ok else None
            idx, node = inner, node.src[0]
            continue
        idx = _reshape(idx, node.shape, node.src[0].shape) if node.op is Op.RESHAPE else _move(node, idx)
        node = node.src[0]
    if node.op is not Op.LOAD or node.dtype is not dtype:
        return None
    found = _affine(_resimplify(linearize(idx, node.shape)))
    return None if found is None else (node.arg,) + found + ((None,) if pad_ok else ())


def _affine(addr):
    """(offset, {var name: stride}) of an address with no // or % left, else None."""
    if isinstance(addr, Const):
        return addr.v, {}
    if isinstance(addr, Var):
        return 0, {addr.name: 1}
    if isinstance(addr, Sum) and all(isinstance(a, Var) for a, _ in addr.terms):
        return addr.const, {a.name: c for a, c in addr.terms}
    return None  # a // or % survived: the view is not strided


def _padded(pad: KNode, idx: list, dtype):
    """The address of `idx` in the row-major zero-padded copy of PAD `pad`'s source, whose
    own view of its LOAD must be plain and strided: (input, offset, strides, Padded)."""
    idx = [_resimplify(i) for i in idx]
    if any(b < 0 or a < 0 for b, a in pad.arg) or any(in_range(i, n) is not True for i, n in zip(idx, pad.shape)):
        return None  # an address outside the padded array would wrap into another row
    outer = _affine(_resimplify(linearize(idx, pad.shape)))
    src = pad.src[0]
    if outer is None or 0 in src.shape:
        return None
    pvars = [var(f"p{d}", n) for d, n in enumerate(src.shape)]
    base = _address(src, pvars, dtype)
    if base is None:
        return None
    index, off, st = base
    strides = tuple(st.get(v.name, 0) if isinstance(v, Var) else 0 for v in pvars)
    return (index,) + outer + (Padded(index, off, tuple(src.shape), strides, tuple(pad.arg)),)


def _resimplify(x):
    """x with `(sum) % c` rewritten where reducing the coefficients mod c leaves a value in
    [0, c), e.g. (r*11 + o) % 10 -> r + o for r + o < 10: windows (frontend/windows.py)
    read rows of n+d cells as rows of n, which the simplifier alone leaves as a %. Exact
    because (k*a + b) mod c = ((k mod c)*a + b) mod c for integers."""
    if isinstance(x, (Const, Var)):
        return x
    if isinstance(x, Sum):
        return _sum([(_resimplify(a), c) for a, c in x.terms] + [(Const(x.const), 1)])
    inner = _resimplify(x.x)
    if isinstance(x, Div):
        return _div(inner, x.c)
    c = x.c
    if isinstance(x, Mod) and isinstance(inner, Sum):
        for centered in (False, True):  # residues in [0, c), then nearest to zero
            def red(k):
                r = k % c
                return r - c if centered and 2 * r > c else r
            y = _sum([(a, red(k)) for a, k in inner.terms] + [(Const(inner.const % c), 1)])
            if 0 <= y.vmin and y.vmax < c:
                return y
    return _mod(inner, c)


@dataclass(frozen=True)
class Padded:
    """A zero-padded copy of an input's strided view: input `index`, element `offset`,
    `shape` and `strides` (elements) of the view, `pads` ((before, after) per dim)."""
    index: int
    offset: int
    shape: tuple
    strides: tuple
    pads: tuple


@dataclass(frozen=True)
class View:
    """An operand of a Contraction: input `index` read at element `offset` + sum of
    `strides`[d] * i_d over the contraction's dims (0 where it broadcasts), in the input's
    buffer, or, if `padded` is set, in the row-major zero-padded copy it describes."""
    index: int
    offset: int
    strides: tuple
    padded: Padded | None = None


@dataclass(frozen=True)
class Contraction:
    """out[dims not "k"] = sum over the "k" dims of a[dims] * b[dims]: a GEMM whose
    operands are strided views that do not merge into matrices (a convolution's windows,
    im2col), possibly of a zero-padded input. `sizes` and `roles` per dim ("b" batch,
    "m" a only, "n" b only, "k" summed; every dim has size >= 2); `out_strides` per
    non-"k" dim (elements, output at offset 0). dtype and epilogue as in Gemm
    (epilogue_block always None)."""
    kind = "contraction"
    dtype: str
    sizes: tuple
    roles: str
    a: View
    b: View
    out_strides: tuple
    epilogue: tuple | None = None
    epilogue_block: object | None = None


def contraction(node: KNode, chain: tuple = ()) -> Contraction | None:
    """The Contraction that SUM `node` computes, written as gemm() says."""
    found = _product_sum(node)
    if found is None:
        return None
    mul, shape, axes, idx = found
    ops = [_address(src, idx, node.dtype, pad_ok=True) for src in mul.src]
    outs = _out_strides(node, idx, axes, chain)
    if None in ops or outs is None:
        return None
    dims = [d for d, v in enumerate(idx) if isinstance(v, Var)]
    roles = ""
    for d in dims:
        in_a, in_b = (idx[d].name in op[2] for op in ops)
        if d in axes:
            if not (in_a and in_b):
                return None  # summed in one operand only: not a product of matrices
            roles += "k"
        else:
            roles += "b" if in_a == in_b else "m" if in_a else "n"
    views = tuple(View(i, off, tuple(st.get(idx[d].name, 0) for d in dims), padded) for i, off, st, padded in ops)
    return Contraction(node.dtype.name, tuple(shape[d] for d in dims), roles, *views,
                       tuple(outs.get(idx[d].name, 0) for d, r in zip(dims, roles) if r != "k"))


def flops(g) -> int:
    if getattr(g, "kind", None) == "contraction":
        n = 1
        for size in g.sizes:
            n *= size
        return 2 * n
    return 2 * g.batch * g.m * g.n * g.k

