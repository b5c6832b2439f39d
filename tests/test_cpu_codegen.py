"""The C renderer and the cpu device against the reference (numpy_interp) on hand-built
kernels, plus the index algebra and the compile cache.

Kernels of a test are compiled together (compile_many) to keep the file fast."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from luban import dtypes as D
from luban.codegen import c, numpy_interp
from luban.codegen.kernel import Kernel, KNode
from luban.codegen.symbolic import Const, Div, Var, in_range, linearize, unravel
from luban.graph.ops import Op
from luban.runtime import compile_cache
from luban.runtime.cpu import CPUDevice

REPO = Path(__file__).resolve().parents[1]
DEV = CPUDevice()


def render(k: Kernel) -> tuple:
    """(source, function name) of the kernel in C."""
    r = c.render(k)
    return r.source, r.name
FLOATS = (D.float32, D.float64, D.float16, D.bfloat16)


@pytest.fixture(autouse=True, scope="module")
def _cache_dir(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LUBAN_CACHE_DIR", str(tmp_path_factory.mktemp("luban-cache")))
        yield


# --- building and running kernels ----------------------------------------------------

def N(op, src, arg, dt, shape) -> KNode:
    return KNode(op, tuple(src), arg, dt, tuple(shape))


def load(i, dt, shape) -> KNode:
    return N(Op.LOAD, (), i, dt, shape)


def const(v, dt, shape) -> KNode:
    """CONST broadcast to `shape`, as the scheduler would build it."""
    node = N(Op.CONST, (), v, dt, ())
    if shape:
        node = N(Op.EXPAND, (N(Op.RESHAPE, (node,), (1,) * len(shape), dt, (1,) * len(shape)),), shape, dt, shape)
    return node


def kernel(ast: KNode, name: str) -> Kernel:
    loads = {n.arg: (n.dtype, n.shape) for n in ast.toposort() if n.op is Op.LOAD}
    return Kernel(ast, tuple(loads[i] for i in range(len(loads))), name)


def launch(prog, k: Kernel, arrays: list) -> np.ndarray:
    out = DEV.alloc(int(np.prod(k.shape)) * k.dtype.itemsize)
    bufs = [out]
    for a in arrays:
        bufs.append(DEV.alloc(a.nbytes))
        DEV.copyin(bufs[-1], np.ascontiguousarray(a))
    DEV.launch(prog, bufs)
    host = np.empty(k.shape, k.dtype.np)
    DEV.copyout(host, out)
    return host


def reference(k: Kernel, arrays: list) -> np.ndarray:
    out = np.zeros(int(np.prod(k.shape)) * k.dtype.itemsize + 1, np.uint8)
    numpy_interp.render(k).source([out] + [np.ascontiguousarray(a).reshape(-1).view(np.uint8) for a in arrays])
    return out[:-1].view(k.dtype.np).reshape(k.shape)


def compare(got: np.ndarray, want: np.ndarray, tol: float) -> None:
    if got.dtype.kind in "biu":
        np.testing.assert_array_equal(got, want)
    else:  # floats, bfloat16 included; tol 0 is exact equality with nan == nan
        with np.errstate(invalid="ignore"):
            got, want = got.astype(np.float64), want.astype(np.float64)
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, equal_nan=True)


def check(cases: list) -> None:
    """cases: (kernel, input arrays, tolerance); 0 means exactly equal (nan == nan)."""
    progs = DEV.compile_many([render(k) for k, _, _ in cases])
    failures = []
    for (k, arrays, tol), prog in zip(cases, progs):
        try:
            compare(launch(prog, k, arrays), reference(k, arrays), tol)
        except AssertionError as e:
            failures.append(f"--- {k.name}\n{k.ast.pretty()}\n{e}")
    assert not failures, "\n".join(failures)


def sample(dt, shape, rng, low=None, high=None) -> np.ndarray:
    """Random values of `dt`, salted with the awkward ones (nan, inf, extremes, 0, -1)."""
    if low is not None:
        return rng.integers(low, high, size=shape).astype(dt.np)
    if dt.is_bool:
        return rng.random(shape) < 0.5
    if dt.is_float:
        x = rng.standard_normal(shape) * 4
        special = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, 1e-4, 3000.0]
    else:
        info = np.iinfo(dt.np)
        x = rng.integers(max(info.min, -20), min(info.max, 20) + 1, size=shape)
        special = [info.min, info.max, 0, 1, -1 if info.min < 0 else 2]
    flat = x.reshape(-1)
    pos = rng.choice(flat.size, size=min(flat.size, 3 * len(special)), replace=False)
    flat[pos] = np.resize(special, pos.size)
    return x.astype(dt.np)


def _tol(op, dt) -> float:
    """libm and numpy's SIMD math may differ by an ulp; the rest must match exactly."""
    if op not in (Op.EXP2, Op.LOG2, Op.SIN):
        return 0
    return {D.float32: 1e-6, D.float64: 1e-14, D.float16: 2e-3, D.bfloat16: 1e-2}[dt]


# --- elementwise -----------------------------------------------------------------------

UNARY_F = (Op.NEG, Op.EXP2, Op.LOG2, Op.SIN, Op.SQRT, Op.RECIP, Op.TRUNC)
BINARY_F = (Op.ADD, Op.MUL, Op.MAX, Op.MOD, Op.IDIV, Op.CMPLT, Op.CMPNE)
UNARY_I = (Op.NEG, Op.RECIP)
BINARY_I = (Op.ADD, Op.MUL, Op.MAX, Op.MOD, Op.IDIV, Op.CMPLT, Op.CMPNE, Op.AND, Op.OR, Op.XOR)
BINARY_B = (Op.ADD, Op.MUL, Op.MAX, Op.CMPLT, Op.CMPNE, Op.AND, Op.OR, Op.XOR)
OPS = {**{dt: (UNARY_F, BINARY_F) for dt in FLOATS}, D.bool_: ((), BINARY_B),
       D.uint32: (UNARY_I, BINARY_I + (Op.SHL, Op.SHR)), D.uint8: (UNARY_I, BINARY_I + (Op.SHL, Op.SHR))}
OPS.update({dt: (UNARY_I, BINARY_I) for dt in (D.int8, D.int32, D.int64)})


@pytest.mark.parametrize("dt", list(OPS), ids=lambda d: d.name)
def test_elementwise(dt):
    rng = np.random.default_rng(0)
    shape = (3, 67, 97)  # big enough for the parallel loop, odd for vector remainders
    a, b, w = load(0, dt, shape), load(1, dt, shape), load(2, D.bool_, shape)
    xa, xb, xw = sample(dt, shape, rng), sample(dt, shape, rng), sample(D.bool_, shape, rng)
    unary, binary = OPS[dt]
    cases = [(kernel(N(op, (a,), None, dt, shape), f"{op.name}_{dt.name}"), [xa], _tol(op, dt)) for op in unary]
    for op in binary:
        out = D.bool_ if op in (Op.CMPLT, Op.CMPNE) else dt
        xs = sample(dt, shape, rng, 0, 40) if op in (Op.SHL, Op.SHR) else xb  # shifts past the width
        cases.append((kernel(N(op, (a, b), None, out, shape), f"{op.name}_{dt.name}"), [xa, xs], 0))
    cases.append((kernel(N(Op.WHERE, (w, a, b), None, dt, shape), f"where_{dt.name}"), [xa, xb, xw], 0))
    check(cases)


CASTS = [(D.float32, t) for t in (D.int32, D.int64, D.uint8, D.int16, D.bool_, D.float16, D.bfloat16, D.float64)]
CASTS += [(D.float64, t) for t in (D.float16, D.bfloat16, D.float32, D.int64, D.uint32)]
CASTS += [(D.int64, t) for t in (D.float32, D.float16, D.bfloat16, D.bool_, D.int8, D.uint16)]
CASTS += [(D.float16, D.float32), (D.float16, D.bfloat16), (D.float16, D.int16), (D.bfloat16, D.float16),
          (D.bfloat16, D.int32), (D.bool_, D.float32), (D.bool_, D.int32), (D.uint8, D.int8), (D.uint8, D.float16)]
BITCASTS = [(D.float32, D.int32), (D.int32, D.float32), (D.float16, D.int16), (D.uint16, D.float16),
            (D.bfloat16, D.uint16), (D.uint16, D.bfloat16), (D.float64, D.int64), (D.int64, D.float64)]


def test_cast_and_bitcast():
    rng = np.random.default_rng(1)
    shape = (40, 33)
    cases = []
    for op, pairs in ((Op.CAST, CASTS), (Op.BITCAST, BITCASTS)):
        for src, dst in pairs:
            x = sample(src, shape, rng)
            if src.is_float and dst in (D.int32, D.int64):  # finite but out of range
                x.reshape(-1)[:6] = [1e10, -1e10, 3e9, -3e9, 7e4 + 0.5, -2.5]
            if src is D.float64:  # halfway cases where rounding twice goes wrong
                x.reshape(-1)[6:8] = [1 + 2**-11 + 2**-40, 1 + 2**-8 + 2**-30]
            cases.append((kernel(N(op, (load(0, src, shape),), dst, dst, shape), f"{op.name}_{src.name}_{dst.name}"),
                          [x], 0))
    check(cases)


def test_const_and_iota():
    values = [(np.inf, D.float32), (-np.inf, D.float16), (np.nan, D.bfloat16), (-0.0, D.float64), (1 / 3, D.float16),
              (1 / 3, D.float64), (-2**63, D.int64), (2**32 - 1, D.uint32), (True, D.bool_), (-7, D.int8)]
    cases = [(kernel(N(Op.CONST, (), v, dt, ()), f"const_{dt.name}"), [], 0) for v, dt in values]
    shape = (5, 4)
    x = load(0, D.int32, shape)
    cases.append((kernel(N(Op.MUL, (x, const(-3, D.int32, shape)), None, D.int32, shape), "mul_const"),
                  [sample(D.int32, shape, np.random.default_rng(2))], 0))
    for dt in (D.float16, D.int32, D.float32, D.bfloat16):
        cases.append((kernel(N(Op.IOTA, (), None, dt, (3000,)), f"iota_{dt.name}"), [], 0))
    iota = N(Op.IOTA, (), None, D.int64, (12,))
    grid = N(Op.EXPAND, (N(Op.RESHAPE, (iota,), (1, 12), D.int64, (1, 12)),), (3, 12), D.int64, (3, 12))
    cases.append((kernel(N(Op.PERMUTE, (grid,), (1, 0), D.int64, (12, 3)), "iota_grid"), [], 0))
    check(cases)


def test_half_conversions_exhaustive():
    """Every float16/bfloat16 bit pattern widens exactly; ties and near-ties narrow to
    nearest even (once, even from float64); copies keep the bits of every pattern."""
    bits = np.arange(1 << 16, dtype=np.uint16)
    cases, copies = [], []
    for half in (D.float16, D.bfloat16):
        with np.errstate(invalid="ignore"):
            wide = bits.view(half.np).astype(np.float64)
            mid = (wide[:-1] + wide[1:]) / 2
        mid = mid[np.isfinite(mid)]
        for src in (D.float32, D.float64):
            x = mid.astype(src.np)
            x = np.concatenate([x, np.nextafter(x, np.inf), np.nextafter(x, -np.inf), [1e300, -1e-300, 70000.0]])
            x = x[np.abs(x) < 1e38] if src is D.float32 else x
            cases.append((kernel(N(Op.CAST, (load(0, src, x.shape),), half, half, x.shape), f"narrow_{src.name}_{half.name}"),
                          [x.astype(src.np)], 0))
        h = load(0, half, bits.shape)
        cases.append((kernel(N(Op.CAST, (h,), D.float32, D.float32, bits.shape), f"widen_{half.name}"), [bits.view(half.np)], 0))
        copies.append(kernel(N(Op.FLIP, (h,), (0,), half, bits.shape), f"copy_{half.name}"))
    check(cases)
    for k, prog in zip(copies, DEV.compile_many([render(k) for k in copies])):
        got = launch(prog, k, [bits.view(k.dtype.np)])
        np.testing.assert_array_equal(got.view(np.uint16), bits[::-1])


# --- reductions ------------------------------------------------------------------------

def _reduce(op, x: KNode, axes) -> KNode:
    shape = tuple(1 if k in axes else n for k, n in enumerate(x.shape))
    return N(op, (x,), tuple(axes), x.dtype, shape)


def test_reduce():
    rng = np.random.default_rng(3)
    shape = (5, 6, 7)
    cases = []
    for dt, op, tol in ((D.float32, Op.SUM, 1e-6), (D.float32, Op.RMAX, 0), (D.int32, Op.SUM, 0),
                        (D.float16, Op.SUM, 5e-3), (D.bool_, Op.SUM, 0), (D.bool_, Op.RMAX, 0),
                        (D.uint8, Op.RMAX, 0), (D.float64, Op.RMAX, 0), (D.bfloat16, Op.RMAX, 0)):
        x = sample(dt, shape, rng) if not dt.is_float or op is Op.RMAX else rng.random(shape).astype(dt.np)
        if dt is D.int32:
            x = rng.integers(-2**31, 2**31, size=shape, dtype=np.int32)  # sums wrap around
        for axes in ((0,), (1,), (2,), (0, 2), (0, 1, 2)):
            k = kernel(_reduce(op, load(0, dt, shape), axes), f"{op.name}_{dt.name}_{''.join(map(str, axes))}")
            cases.append((k, [x], tol))
    x = load(0, D.float32, shape)
    xs = rng.standard_normal(shape).astype(np.float32)
    nested = _reduce(Op.SUM, _reduce(Op.RMAX, x, (2,)), (0,))
    cases.append((kernel(nested, "nested_reduce"), [xs], 1e-6))
    y = load(1, D.float32, (5, 1, 7))
    added = N(Op.ADD, (_reduce(Op.SUM, x, (1,)), y), None, D.float32, (5, 1, 7))
    cases.append((kernel(added, "reduce_plus_load"), [xs, rng.standard_normal((5, 1, 7)).astype(np.float32)], 1e-6))
    flat = N(Op.RESHAPE, (_reduce(Op.SUM, x, (2,)),), (30,), D.float32, (30,))
    cases.append((kernel(N(Op.EXP2, (flat,), None, D.float32, (30,)), "exp2_reshape_sum"), [xs], 1e-5))
    wide = N(Op.EXPAND, (load(0, D.float32, (5, 1, 7)),), shape, D.float32, shape)
    cases.append((kernel(_reduce(Op.SUM, wide, (1,)), "sum_expand"), [xs[:, :1]], 1e-6))
    for op, dt in ((Op.SUM, D.float32), (Op.RMAX, D.float32), (Op.RMAX, D.int32)):
        empty = load(0, dt, (5, 0, 7))
        cases.append((kernel(_reduce(op, empty, (1,)), f"{op.name}_{dt.name}_empty"), [np.zeros((5, 0, 7), dt.np)], 0))
    check(cases)


def test_all_of_small_bool_tensor():
    """all(x) as the frontend builds it: NOT(max(uint8(x != 1))). gcc 12's SLP vectorizer
    turned the comparisons into 0xff masks here, returning 254 for False."""
    x = load(0, D.bool_, (2, 2))
    hit = N(Op.CAST, (N(Op.CMPNE, (x, const(True, D.bool_, (2, 2))), None, D.bool_, (2, 2)),), D.uint8, D.uint8, (2, 2))
    flat = N(Op.RESHAPE, (_reduce(Op.RMAX, hit, (0, 1)),), (), D.uint8, ())
    out = N(Op.CMPNE, (N(Op.CAST, (flat,), D.bool_, D.bool_, ()), N(Op.CONST, (), True, D.bool_, ())), None, D.bool_, ())
    check([(kernel(out, "all_small"), [np.array([[True, False], [True, True]])], 0)])


def test_large_sum():
    rng = np.random.default_rng(4)
    x = rng.random(1 << 20, dtype=np.float32)
    m = rng.standard_normal((1024, 1024)).astype(np.float32)
    cases = [(kernel(_reduce(Op.SUM, load(0, D.float32, x.shape), (0,)), "sum_1m"), [x], 1e-6)]
    for axis in (0, 1):
        cases.append((kernel(_reduce(Op.SUM, load(0, D.float32, m.shape), (axis,)), f"sum_rows_{axis}"), [m], 1e-4))
    check(cases)
    prog = DEV.compile(*render(cases[0][0]))
    assert abs(float(launch(prog, cases[0][0], [x])[0]) - x.astype(np.float64).sum()) < 1e-6 * x.size


def _matmul(m: int, k: int, n: int, dt=D.float32) -> KNode:
    """a @ b as the frontend builds it: broadcast both to (m, n, k), multiply, sum k."""
    a, b = load(0, dt, (m, k)), load(1, dt, (k, n))
    ae = N(Op.EXPAND, (N(Op.RESHAPE, (a,), (m, 1, k), dt, (m, 1, k)),), (m, n, k), dt, (m, n, k))
    bt = N(Op.RESHAPE, (N(Op.PERMUTE, (b,), (1, 0), dt, (n, k)),), (1, n, k), dt, (1, n, k))
    prod = N(Op.MUL, (ae, N(Op.EXPAND, (bt,), (m, n, k), dt, (m, n, k))), None, dt, (m, n, k))
    return N(Op.RESHAPE, (_reduce(Op.SUM, prod, (2,)),), (m, n), dt, (m, n))


def test_tiled_reductions():
    """Reduces whose loads run along the output's last dim get one accumulator per output
    position in a tile, with the tile loop innermost."""
    rng = np.random.default_rng(9)

    def rand(*shape, dt=np.float32):
        return rng.standard_normal(shape).astype(dt)
    cases = [(kernel(_matmul(8, 33, n), f"matmul_{n}"), [rand(8, 33), rand(33, n)], 1e-5) for n in (1024, 600, 1031, 7)]
    x = load(0, D.float32, (50, 700))
    cases.append((kernel(_reduce(Op.RMAX, x, (0,)), "colmax"), [rand(50, 700)], 0))
    for dt, xs in ((D.float16, rand(40, 96, dt=np.float16)), (D.bool_, rng.random((30, 64)) < 0.1)):
        cases.append((kernel(_reduce(Op.SUM, load(0, dt, xs.shape), (0,)), f"colsum_{dt.name}"), [xs], 1e-2))
    padded = N(Op.PAD, (load(0, D.float32, (20, 60)),), ((0, 0), (3, 5)), D.float32, (20, 68))
    cases.append((kernel(_reduce(Op.SUM, padded, (0,)), "colsum_pad"), [rand(20, 60)], 1e-6))
    gathered = _gather(load(0, D.float32, (20, 64)), load(1, D.int32, (20, 64)), 1)
    cases.append((kernel(_reduce(Op.SUM, gathered, (0,)), "colsum_gather"),
                  [rand(20, 64), rng.integers(0, 64, (20, 64)).astype(np.int32)], 1e-6))
    inner = N(Op.RESHAPE, (_reduce(Op.RMAX, load(0, D.float32, (10, 5, 64)), (1,)),), (10, 64), D.float32, (10, 64))
    cases.append((kernel(_reduce(Op.SUM, inner, (0,)), "colsum_of_colmax"), [rand(10, 5, 64)], 1e-6))
    check(cases)
    assert re.search(r"double acc\d+\[512\]", render(cases[0][0])[0])
    assert "[" not in render(cases[2][0])[0].split("double acc")[1].split(";")[0]  # 1031: prime, untiled


def test_column_sum_is_shared_among_threads():
    """A reduce with a single tile of outputs (a bias gradient: sum over rows) splits the
    tile, so the accumulating loops run inside the parallel loop, not on one thread."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2048, 128)).astype(np.float32)
    k = kernel(_reduce(Op.SUM, load(0, D.float32, x.shape), (0,)), "bias_grad")
    check([(k, [x], 1e-4)])  # float32 reference vs double accumulators: cancellation in small sums
    src = render(k)[0]
    body = src[src.index("#pragma omp parallel for"):]
    assert re.search(r"double acc\d+\[32\]", body), src  # 128 outputs: 4 tiles of 32, one per iteration


def test_adjacent_reduced_dims_read_as_one_run_are_one_loop():
    """A sum over (N, H, W) of NCHW data (BatchNorm's statistics) loops over H*W at once;
    summed dims that a load does not read as one run (a transposed view) keep their
    loops, which a merged loop would have to address with // and %."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 4, 8, 16)).astype(np.float32)
    plain = kernel(_reduce(Op.SUM, load(0, D.float32, x.shape), (0, 2, 3)), "bn_sum")
    t = load(0, D.float32, x.shape)
    t = N(Op.PERMUTE, (t,), (0, 1, 3, 2), D.float32, (6, 4, 16, 8))
    transposed = kernel(_reduce(Op.SUM, t, (0, 2, 3)), "bn_sum_t")
    check([(plain, [x], 1e-4), (transposed, [x], 1e-4)])
    src = render(plain)[0]
    assert re.search(r"for \(i64 r\d+ = 0; r\d+ < 128; r\d+\+\+\)", src) and "/ 16" not in src, src
    src = render(transposed)[0]
    assert "< 128;" not in src and re.search(r"< 16;", src) and re.search(r"< 8;", src), src


# --- movement --------------------------------------------------------------------------

def test_movement():
    rng = np.random.default_rng(5)
    f32 = D.float32
    x, xs = load(0, f32, (3, 4, 5)), rng.standard_normal((3, 4, 5)).astype(np.float32)

    def mv(op, src, arg, shape):
        return N(op, (src,), arg, f32, shape)
    perm = mv(Op.PERMUTE, x, (2, 0, 1), (5, 3, 4))
    pad = mv(Op.PAD, x, ((1, 2), (0, 0), (3, 1)), (6, 4, 9))
    trees = {
        "permute": perm,
        "expand": mv(Op.EXPAND, load(0, f32, (1, 4, 1)), (3, 4, 5), (3, 4, 5)),
        "shrink": mv(Op.SHRINK, x, ((1, 3), (0, 4), (2, 5)), (2, 4, 3)),
        "flip": mv(Op.FLIP, x, (0, 2), (3, 4, 5)),
        "pad": pad,
        "exp2_pad": N(Op.EXP2, (pad,), None, f32, (6, 4, 9)),  # outside is exp2(0) = 1
        "merge": mv(Op.RESHAPE, x, (12, 5), (12, 5)),
        "split": mv(Op.RESHAPE, load(0, f32, (60,)), (3, 4, 5), (3, 4, 5)),
        "reshape_permute": mv(Op.RESHAPE, mv(Op.RESHAPE, perm, (15, 4), (15, 4)), (6, 10), (6, 10)),
        "pad_reshape_permute": mv(Op.PAD, mv(Op.RESHAPE, perm, (15, 4), (15, 4)), ((2, 0), (1, 1)), (17, 6)),
        "chain": mv(Op.RESHAPE, mv(Op.FLIP, mv(Op.SHRINK, pad, ((1, 5), (1, 3), (0, 9)), (4, 2, 9)), (1,), (4, 2, 9)),
                    (8, 9), (8, 9)),
        "size1": mv(Op.PERMUTE, mv(Op.EXPAND, load(0, f32, (1, 5, 1)), (4, 5, 3), (4, 5, 3)), (2, 1, 0), (3, 5, 4)),
        "pad_of_empty": N(Op.EXP2, (mv(Op.PAD, load(0, f32, (0, 3)), ((1, 1), (0, 0)), (2, 3)),), None, f32, (2, 3)),
        "pad_nothing": mv(Op.PAD, x, ((0, 0), (0, 0), (0, 0)), (3, 4, 5)),
        "empty": N(Op.EXP2, (load(0, f32, (0, 4)),), None, f32, (0, 4)),
        "scalar": N(Op.NEG, (load(0, f32, ()),), None, f32, ()),
    }
    cases = []
    for name, tree in trees.items():
        (spec,) = kernel(tree, name).inputs
        cases.append((kernel(tree, name), [xs if spec[1] == xs.shape else
                                           rng.standard_normal(spec[1]).astype(np.float32)],
                      1e-6 if tree.op is Op.EXP2 else 0))  # libm's exp2f and numpy's may differ by an ulp
    cond = N(Op.CMPLT, (perm, const(0.5, f32, (5, 3, 4))), None, D.bool_, (5, 3, 4))
    where = N(Op.WHERE, (cond, perm, const(-1.0, f32, (5, 3, 4))), None, f32, (5, 3, 4))
    cases.append((kernel(where, "where_const"), [xs], 0))
    check(cases)


def test_loop_invariant_work_is_hoisted():
    """x - max(x, axis=1), broadcast back: the row max runs once per row, not per element."""
    x = load(0, D.float32, (64, 300))
    m = N(Op.EXPAND, (_reduce(Op.RMAX, x, (1,)),), (64, 300), D.float32, (64, 300))
    k = kernel(N(Op.ADD, (x, N(Op.NEG, (m,), None, D.float32, (64, 300))), None, D.float32, (64, 300)), "sub_rowmax")
    lines = _function(*render(k)).splitlines()
    loops = [line for line in lines if line.lstrip().startswith("for (")]
    assert len(loops) == 3 and loops[1].lstrip().startswith("for (i64 r"), lines  # row loop
    assert len(loops[1]) - len(loops[1].lstrip()) == len(loops[2]) - len(loops[2].lstrip()), lines  # siblings
    check([(k, [np.random.default_rng(8).standard_normal((64, 300)).astype(np.float32)], 0)])


def _function(src: str, name: str) -> str:
    return src[src.index(f"void {name}("):]


def test_contiguous_reshape_is_plain_affine():
    x = load(0, D.float32, (4, 6, 5))
    merged = N(Op.RESHAPE, (x,), (24, 5), D.float32, (24, 5))
    split = N(Op.RESHAPE, (merged,), (2, 12, 5), D.float32, (2, 12, 5))
    body = _function(*render(kernel(split, "reshape_chain")))
    assert "/" not in body and "%" not in body, body
    assert "in0[i0*60 + i1*5 + i2]" in body, body
    permuted = N(Op.RESHAPE, (N(Op.PERMUTE, (x,), (1, 0, 2), D.float32, (6, 4, 5)),), (24, 5), D.float32, (24, 5))
    assert "/" in _function(*render(kernel(permuted, "reshape_perm")))


# --- symbolic index algebra -------------------------------------------------------------

def test_symbolic_rules():
    i, j, k = Var("i", 5), Var("j", 4), Var("k", 24)
    assert (i * 4 + j) // 4 == i
    assert (i * 4 + j) % 4 == j
    assert j // 4 == Const(0) and j % 4 == j
    assert (i * 4 + j + 9) // 4 == i + 2 + (j + 1) // 4
    assert Const(7) // 2 == Const(3) and Const(-7) % 3 == Const(2)
    assert (i + 3) - 3 == i and (2 * i + 3 * i).render() == "i*5"
    assert (i - 1) // 4 == (i + 3) // 4 - 1 and (i - 1) % 4 == (i + 3) % 4  # numerators kept >= 0
    assert isinstance((j - i) // 4, Div) and ((j - i) // 4).render() == "((-i + j)/4)"
    assert ((k // 4) // 3) == k // 12 and (k % 12) % 4 == k % 4
    assert linearize(unravel(k, (4, 6)), (4, 6)) == k
    assert [e.render() for e in unravel(k, (4, 6))] == ["(k/6)", "(k%6)"]
    assert linearize([i, j], (5, 4)).render() == "i*4 + j"
    assert ((3 - i) * 2).vmin == -2 and ((3 - i) * 2).vmax == 6 and (i % 3).vmax == 2
    assert in_range(j, 4) is True and in_range(j + 4, 4) is False
    assert in_range(i - 1, 4) == "i - 1 >= 0" and in_range(i - 1, 3) == "i - 1 >= 0 && i - 1 < 3"
    with pytest.raises(TypeError):
        i * j


# --- gather / scatter ------------------------------------------------------------------

def _gather(x: KNode, idx: KNode, axis: int) -> KNode:
    return N(Op.GATHER, (x, idx), axis, x.dtype, idx.shape)


def test_gather():
    rng = np.random.default_rng(6)
    x, xs = load(0, D.float32, (5, 7)), rng.standard_normal((5, 7)).astype(np.float32)
    i1, is1 = load(1, D.int64, (5, 3)), rng.integers(0, 7, (5, 3))
    i0, is0 = load(1, D.int32, (9, 7)), rng.integers(0, 5, (9, 7)).astype(np.int32)
    iu, isu = load(1, D.uint8, (5, 30)), rng.integers(0, 7, (5, 30)).astype(np.uint8)
    ex = N(Op.EXP2, (N(Op.FLIP, (x,), (1,), D.float32, (5, 7)),), None, D.float32, (5, 7))
    cases = [(kernel(_gather(x, i1, 1), "gather_axis1"), [xs, is1], 0),
             (kernel(_gather(x, i0, 0), "gather_axis0"), [xs, is0], 0),
             (kernel(_gather(ex, iu, 1), "gather_expr"), [xs, isu], 1e-6),
             (kernel(_reduce(Op.SUM, _gather(x, iu, 1), (1,)), "gather_sum"), [xs, isu], 1e-5)]
    check(cases)


@pytest.mark.parametrize("bad", [7, -1, 1 << 40])
def test_gather_out_of_range(bad):
    x, idx = load(0, D.float32, (5, 7)), load(1, D.int64, (5, 3))
    k = kernel(_gather(x, idx, 1), "gather_bad")
    idxs = np.zeros((5, 3), np.int64)
    idxs[3, 1] = bad
    xs = np.ones((5, 7), np.float32)
    with pytest.raises(IndexError):
        reference(k, [xs, idxs])
    with pytest.raises(IndexError, match="gather_bad"):
        launch(DEV.compile(*render(k)), k, [xs, idxs])
    empty = kernel(_gather(load(0, D.float32, (5, 0)), idx, 1), "gather_from_empty")
    with pytest.raises(IndexError):
        launch(DEV.compile(*render(empty)), empty, [np.ones((5, 0), np.float32), idxs])


def _scatter(base: KNode, idx: KNode, val: KNode, axis: int) -> KNode:
    return N(Op.SCATTER_ADD, (base, idx, val), axis, base.dtype, base.shape)


def test_scatter_add():
    rng = np.random.default_rng(7)
    cases = []
    for dt, bshape, ishape, axis in ((D.float32, (4, 6), (4, 10), 1), (D.int32, (5, 3), (8, 3), 0),
                                     (D.float16, (4, 6), (4, 50), 1), (D.float32, (64, 300), (64, 600), 1),
                                     (D.float32, (40, 3, 7), (90, 3, 7), 0), (D.float32, (8, 50, 40), (8, 300, 40), 1),
                                     (D.float32, (4, 6), (4, 0), 1),
                                     # wide rows: the off-axis dim in blocks, run below the axis
                                     (D.float32, (30, 96), (200, 96), 0), (D.int32, (5, 64), (40, 64), 0)):
        base, idx, val = load(0, dt, bshape), load(1, D.int64, ishape), load(2, dt, ishape)
        arrays = [sample(dt, bshape, rng) if not dt.is_float else rng.standard_normal(bshape).astype(dt.np),
                  rng.integers(0, bshape[axis], ishape),  # repeats, accumulated in order
                  rng.standard_normal(ishape).astype(dt.np) if dt.is_float else sample(dt, ishape, rng)]
        cases.append((kernel(_scatter(base, idx, val, axis), f"scatter_{dt.name}_{len(cases)}"), arrays, 0))
    zeros = const(0.0, D.float32, (7, 5))  # embedding backward: scatter into zeros
    emb = _scatter(zeros, load(0, D.int64, (3, 5)), N(Op.EXP2, (load(1, D.float32, (3, 5)),), None, D.float32, (3, 5)), 0)
    cases.append((kernel(emb, "scatter_into_zeros"), [rng.integers(0, 7, (3, 5)), rng.standard_normal((3, 5)).astype(np.float32)], 1e-6))
    check(cases)
    k = cases[0][0]
    bad = [cases[0][1][0], np.full((4, 10), 6), cases[0][1][2]]
    with pytest.raises(IndexError, match="scatter_float32_0"):
        launch(DEV.compile(*render(k)), k, bad)


# --- compile cache ---------------------------------------------------------------------

def _tiny(name: str):
    """A kernel unique to the calling test, so no earlier dlopen shares its path."""
    x = load(0, D.float32, (3,))
    k = kernel(N(Op.ADD, (x, x), None, D.float32, (3,)), name)
    return k, render(k)


def _runs(dev, k, src) -> bool:
    got = launch(dev.compile(*src), k, [np.arange(3, dtype=np.float32)])
    return np.array_equal(got, [0, 2, 4])


def test_cache_hit_runs_no_compiler(tmp_path, monkeypatch):
    monkeypatch.setenv("LUBAN_CACHE_DIR", str(tmp_path))
    k, src = _tiny("cache_hit")
    assert _runs(CPUDevice(), k, src)
    assert len(list(tmp_path.glob("*.so"))) == 1  # LUBAN_CACHE_DIR is where it went

    def no_compiler(*args, **kwargs):
        raise AssertionError(f"compiler ran on a cache hit: {args}")
    monkeypatch.setattr(compile_cache.subprocess, "run", no_compiler)
    assert _runs(CPUDevice(), k, src)


def test_cache_dir_from_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv("LUBAN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.cache_dir() == tmp_path / "luban"


def test_corrupt_entry_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("LUBAN_CACHE_DIR", str(tmp_path))
    k, src = _tiny("corrupt_so")
    so = compile_cache.build(src[0], CPUDevice().FLAGS)
    good = so.read_bytes()
    so.write_bytes(good[: len(good) // 2])  # truncated: the checksum no longer matches
    assert _runs(CPUDevice(), k, src)
    assert so.read_bytes() == good


def test_unloadable_entry_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("LUBAN_CACHE_DIR", str(tmp_path))
    k, src = _tiny("unloadable_so")
    so = compile_cache.build(src[0], CPUDevice().FLAGS)
    good = so.read_bytes()
    so.write_bytes(b"not an ELF file")  # with a matching checksum: only dlopen can tell
    so.with_suffix(".sha256").write_text(__import__("hashlib").sha256(b"not an ELF file").hexdigest())
    assert _runs(CPUDevice(), k, src)
    assert so.read_bytes() == good


def test_missing_compiler_is_named(monkeypatch):
    monkeypatch.setenv("CC", "no-such-cc-luban")
    with pytest.raises(compile_cache.CompileError, match="no-such-cc-luban"):
        compile_cache.build("int x;", ())
    monkeypatch.delenv("CC")
    monkeypatch.setenv("PATH", "")
    with pytest.raises(compile_cache.CompileError, match="gcc, clang or cc"):
        compile_cache.compiler()


def test_compile_error_shows_compiler_output():
    with pytest.raises(compile_cache.CompileError, match="undeclared|error"):
        CPUDevice().compile("void f(void) { return y; }", "f")


def test_concurrent_processes_compile_same_source(tmp_path, monkeypatch):
    script = """
import numpy as np
from luban.codegen import c
from luban.codegen.kernel import Kernel, KNode
from luban.graph.ops import Op
from luban import dtypes as D
from luban.runtime.cpu import CPUDevice
x = KNode(Op.LOAD, (), 0, D.float32, (3,))
k = Kernel(KNode(Op.MUL, (x, x), None, D.float32, (3,)), ((D.float32, (3,)),), "two_procs")
dev = CPUDevice()
r = c.render(k)
prog = dev.compile(r.source, r.name)
out, inp = dev.alloc(12), dev.alloc(12)
dev.copyin(inp, np.arange(3, dtype=np.float32))
dev.launch(prog, [out, inp])
res = np.empty(3, np.float32)
dev.copyout(res, out)
assert res.tolist() == [0, 1, 4], res
"""
    env = {**os.environ, "LUBAN_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errors = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    from luban.runtime import cpu
    monkeypatch.setenv("LUBAN_CACHE_DIR", str(tmp_path))  # the probe of the kernel flags is
    probe = compile_cache.build(cpu._PROBE, cpu.compile_flags())  # cached there too: a hit here
    assert len([p for p in tmp_path.glob("*.so") if p != probe]) == 1


def test_zero_size_buffers_and_alignment():
    for n in (0, 1, 100):
        buf = DEV.alloc(n)
        assert buf.ctypes.data % 64 == 0 and buf.nbytes >= max(n, 1)


def test_forked_child_runs_parallel_kernels():
    """GNU OpenMP hangs in a forked child once the parent ran a parallel region, unless the
    device drops the child to one thread (DataLoader workers fork)."""
    k = kernel(N(Op.EXP2, (load(0, D.float32, (256, 1024)),), None, D.float32, (256, 1024)), "forked")
    prog = DEV.compile(*render(k))
    x = np.zeros((256, 1024), np.float32)
    assert launch(prog, k, [x]).sum() == x.size  # the parent's parallel region
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        os._exit(0 if launch(prog, k, [x]).sum() == x.size else 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung in a parallel kernel")


@pytest.mark.parametrize("given, want", [(None, "None"), ("PASSIVE", "PASSIVE")])
def test_openmp_wait_policy_is_left_to_libgomp_and_the_user(given, want):
    """The cpu device sets no wait policy: libgomp's default short spin keeps a thread
    awake between kernels (a passive wait made each kernel wake a sleeping thread: W4
    ran on 1.0 cores); a user's own setting is kept."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if given:
        env["OMP_WAIT_POLICY"] = given
    code = "import os, luban.runtime.cpu; print(os.environ.get('OMP_WAIT_POLICY'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == want


def test_long_max_reductions_vectorize_and_keep_nan():
    """A float max runs as a vectorized reduction (the vector max instructions drop nans,
    so nan is tracked apart): rows with a nan anywhere, only -inf, and plain values."""
    rng = np.random.default_rng(4)
    for dt in (D.float32, D.float64):
        x = rng.standard_normal((6, 1000)).astype(dt.np)
        x[1, 517] = np.nan
        x[2, :] = -np.inf
        x[3, 999] = np.nan
        x[4, 0] = np.inf
        k = kernel(_reduce(Op.RMAX, load(0, dt, x.shape), (1,)), f"rowmax_{dt.name}")
        check([(k, [x], 0)])
        assert "reduction(max:" in render(k)[0]


def test_exp2_is_inline_and_within_one_ulp_over_the_float_range():
    """float exp2 is luban's inline polynomial (no call to a math library: a call keeps
    a softmax kernel from running in registers): within 1 ulp of exp2 from overflow to
    underflow, subnormal results included; nan, +-inf and the edges exact."""
    edges = [-np.inf, np.inf, np.nan, -0.0, 0.0, -126.0, -149.0, -149.5, -150.0, -151.0, 127.99999, 128.0, 1e30, -1e30]
    x = np.concatenate([np.linspace(-170, 140, 400001), np.random.default_rng(3).uniform(-1, 1, 100000), edges])
    x = x.astype(np.float32)
    k = kernel(N(Op.EXP2, (load(0, D.float32, x.shape),), None, D.float32, x.shape), "exp2_range")
    (prog,) = DEV.compile_many([render(k)])
    got = launch(prog, k, [x])
    with np.errstate(over="ignore"):
        want = np.exp2(x.astype(np.float64)).astype(np.float32)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    fin = ~np.isnan(want)
    np.testing.assert_array_max_ulp(got[fin], want[fin], maxulp=1)
    lib = compile_cache.build(render(k)[0], DEV.FLAGS).read_bytes()
    assert b"exp2f" not in lib, "the kernel calls a library exp2f"


def test_kernels_compile_without_libmvec_where_it_does_not_link(monkeypatch):
    """A C library without libmvec (musl, macOS): the flags probe drops it, and a kernel
    calling exp2 still compiles and gives exp2's values (scalar calls)."""
    from luban.runtime import cpu
    monkeypatch.setattr(cpu, "LIBMVEC_FLAGS", ("-DLUBAN_LIBMVEC", "-lluban_no_such_library"))
    flags = cpu.compile_flags()
    assert flags == cpu.BASE_FLAGS
    assert cpu.CPUDevice().FLAGS == cpu.BASE_FLAGS
    dev = cpu.CPUDevice()
    x = np.linspace(-20, 20, 1001).astype(np.float32)
    k = kernel(N(Op.EXP2, (load(0, D.float32, x.shape),), None, D.float32, x.shape), "exp2_no_mvec")
    src, name = render(k)
    lib = compile_cache.build(src, flags)
    assert lib.exists()
    out = dev.alloc(x.nbytes)
    inp = dev.alloc(x.nbytes)
    dev.copyin(inp, x)
    dev.launch(dev.compile(src, name), [out, inp])
    got = np.empty_like(x)
    dev.copyout(got, out)
    np.testing.assert_array_max_ulp(got, np.exp2(x.astype(np.float64)).astype(np.float32), maxulp=1)


def test_kernels_link_libmvec_on_glibc():
    from luban.runtime import cpu
    import platform
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("libmvec is glibc's")
    assert cpu.compile_flags()[-len(cpu.LIBMVEC_FLAGS):] == cpu.LIBMVEC_FLAGS


def test_pad_guards_split_the_innermost_loop():
    """A concatenation along the innermost dim (a sum of PADs) renders one loop per
    range of that dim, with no guard left inside them; results match the reference, for
    guards from several PADs, one through a permute, and one at a 1-wide edge."""
    rng = np.random.default_rng(11)
    f32 = D.float32
    a, b, c = load(0, f32, (6, 5)), load(1, f32, (6, 7)), load(2, f32, (4, 6))
    pa = N(Op.PAD, (a,), ((0, 0), (0, 11)), f32, (6, 16))
    pb = N(Op.PAD, (b,), ((0, 0), (5, 4)), f32, (6, 16))
    ct = N(Op.PERMUTE, (c,), (1, 0), f32, (6, 4))  # c's transpose fills the last 4 columns
    pc = N(Op.PAD, (ct,), ((0, 0), (12, 0)), f32, (6, 16))
    concat = N(Op.ADD, (N(Op.ADD, (pa, pb), None, f32, (6, 16)), N(Op.EXP2, (pc,), None, f32, (6, 16))),
               None, f32, (6, 16))
    edge = N(Op.PAD, (load(0, f32, (6, 15)),), ((0, 0), (1, 0)), f32, (6, 16))
    cases = [(kernel(concat, "concat3"), [rng.standard_normal(s).astype(np.float32) for s in ((6, 5), (6, 7), (4, 6))],
              1e-6), (kernel(edge, "pad_edge"), [rng.standard_normal((6, 15)).astype(np.float32)], 0)]
    check(cases)
    for k, _, _ in cases:
        src = render(k)[0].split(k.name)[-1]
        assert "if (" not in src, src
    assert render(cases[0][0])[0].count("for (i64 i1") == 3  # the ranges [0, 5), [5, 12) and [12, 16)


def test_block_epilogue_matches_the_whole_kernel_block_by_block():
    """render_block: an epilogue (bias broadcast along rows, then exp2, over a GEMM result
    of shape (1, 6, 1, 40) viewed as 6 x 40) computed block by block through its
    (args, r0, r1, c0, c1) entry equals the whole kernel; a result read transposed, or
    summed, gets no block form (its blocks would need elements not yet finished)."""
    import ctypes
    from luban.codegen.c import render_block
    rng = np.random.default_rng(21)
    f32 = D.float32
    bias, res = load(0, f32, (40,)), load(1, f32, (1, 6, 1, 40))
    b4 = N(Op.EXPAND, (N(Op.RESHAPE, (bias,), (1, 1, 1, 40), f32, (1, 1, 1, 40)),), (1, 6, 1, 40), f32, (1, 6, 1, 40))
    k = kernel(N(Op.EXP2, (N(Op.ADD, (res, b4), None, f32, (1, 6, 1, 40)),), None, f32, (1, 6, 1, 40)), "epi")
    xs = [rng.standard_normal(40).astype(np.float32), rng.standard_normal((1, 6, 1, 40)).astype(np.float32)]
    want = launch(DEV.compile(*render(k)), k, xs)
    r = render_block(k, 6, 40)
    fn = DEV.compile(r.source, r.name).fn
    fn.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_long]
    out = np.full((6, 40), np.nan, np.float32)
    args = (ctypes.c_void_p * 3)(out.ctypes.data, xs[0].ctypes.data, xs[1].ctypes.data)
    for r0, r1 in ((0, 4), (4, 6)):
        for c0, c1 in ((0, 16), (16, 37), (37, 40)):
            fn(args, r0, r1, c0, c1)
    np.testing.assert_array_equal(out.reshape(want.shape), want)
    transposed = N(Op.PERMUTE, (load(1, f32, (40, 6)),), (1, 0), f32, (6, 40))
    bias2 = N(Op.EXPAND, (N(Op.RESHAPE, (load(0, f32, (40,)),), (1, 40), f32, (1, 40)),), (6, 40), f32, (6, 40))
    assert render_block(kernel(N(Op.ADD, (transposed, bias2), None, f32, (6, 40)), "t"), 6, 40) is None
    summed = _reduce(Op.SUM, load(1, f32, (6, 40)), (1,))
    assert render_block(kernel(N(Op.ADD, (summed, load(0, f32, (6, 1))), None, f32, (6, 1)), "s"), 6, 1) is None


def test_phase_strided_reads_run_one_body_per_phase():
    """Data stored as 2 x 2 phases of 17 x 17 (a stride-2 convolution's input gradient)
    read as the 34 x 34 image, shifted by one: the innermost loop's (i + 1) // 2 and % 2
    become a loop over i // 2 with one body per phase, both for an elementwise kernel
    and for a sum over the image, and the values match the reference."""
    rng = np.random.default_rng(13)
    f32 = D.float32
    ph = load(0, f32, (4, 2, 2, 17, 17))
    perm = N(Op.PERMUTE, (ph,), (0, 3, 1, 4, 2), f32, (4, 17, 2, 17, 2))
    img = N(Op.RESHAPE, (perm,), (4, 34, 34), f32, (4, 34, 34))
    view = N(Op.SHRINK, (img,), ((0, 4), (1, 33), (1, 33)), f32, (4, 32, 32))
    y = load(1, f32, (4, 32, 32))
    prod = N(Op.MUL, (N(Op.EXP2, (view,), None, f32, (4, 32, 32)), y), None, f32, (4, 32, 32))
    xs = [rng.standard_normal((4, 2, 2, 17, 17)).astype(np.float32), rng.standard_normal((4, 32, 32)).astype(np.float32)]
    cases = [(kernel(prod, "phase_elementwise"), xs, 1e-6),
             (kernel(_reduce(Op.SUM, prod, (1, 2)), "phase_sum"), xs, 1e-5)]
    check(cases)
    for k, _, _ in cases:
        src = render(k)[0]
        inner = src[src.index("for (i64 q"):]
        assert not re.search(r"\([^()]*\bq\d+\b[^()]*\)[%/]", inner), src  # no // or % of the loop's variable


def test_channel_sums_read_a_tile_of_channels_per_batch_row():
    """A sum over N, H and W of NCHW data (BatchNorm's statistics) runs with the tile of
    channels between the batch loop and the H*W loop, so consecutive channels' rows are
    read one after another, also where the sum keeps its dims (1, C, 1, 1: the tile is on
    the last dim that is not 1); values match the reference, for a plain sum and a
    product."""
    rng = np.random.default_rng(17)
    f32 = D.float32
    x, y = load(0, f32, (6, 16, 9, 7)), load(1, f32, (6, 16, 9, 7))
    xs = [rng.standard_normal((6, 16, 9, 7)).astype(np.float32) for _ in range(2)]
    prod = N(Op.MUL, (x, y), None, f32, (6, 16, 9, 7))
    flat = lambda v: N(Op.RESHAPE, (_reduce(Op.SUM, v, (0, 2, 3)),), (16,), f32, (16,))
    cases = [(kernel(flat(x), "channel_sum"), xs[:1], 1e-5), (kernel(flat(prod), "channel_dot"), xs, 1e-5),
             (kernel(_reduce(Op.SUM, x, (0, 2, 3)), "channel_sum_keepdim"), xs[:1], 1e-5),
             (kernel(_reduce(Op.SUM, prod, (0, 2, 3)), "channel_dot_keepdim"), xs, 1e-5)]
    check(cases)
    for k, _, _ in cases:
        src = render(k)[0]
        assert re.search(r"for \(i64 r\d+ = 0; r\d+ < 6;.*\n\s*for \(i64 i\d+ = 0; i\d+ < \d+;", src), src


@pytest.mark.parametrize("shape", [(64, 5), (7, 3), (6, 4, 5, 5), (9, 7), (4, 15), (8, 16)])
def test_comparison_of_a_select_in_short_rows(shape):
    """gcc 12 vectorized `c = max(x, t) != t; out = c ? g : 0` wrongly where it first
    unrolled a row of 3, 5, 7 or 15 elements completely (cstyle keeps short inner loops
    loops: `Dialect.keep_loop_pragma`): a ReLU's backward, which tests its output for 0,
    gave garbage gradients. Every such pattern against NumPy."""
    import luban
    rng = np.random.default_rng(sum(shape))
    xv, gv = rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)
    x, g = luban.tensor(xv, device="cpu"), luban.tensor(gv, device="cpu")
    cases = [(luban.where(x.maximum(0.2) != 0.2, g * 2, 0.0), np.where(np.maximum(xv, 0.2) != 0.2, gv * 2, 0)),
             (luban.where(x.maximum(0.0) > 0.3, g, 0.0), np.where(np.maximum(xv, 0) > 0.3, gv, 0)),
             (luban.where(x.clamp(-0.5, 0.5) < 0.5, g, 1.0), np.where(np.clip(xv, -0.5, 0.5) < 0.5, gv, 1))]
    for got, want in cases:
        np.testing.assert_array_equal(got.numpy(), want.astype(np.float32))
    xr = luban.tensor(xv, device="cpu", requires_grad=True)
    (xr.relu() * g).sum().backward()
    np.testing.assert_array_equal(xr.grad.numpy(), np.where(xv > 0, gv, 0))
