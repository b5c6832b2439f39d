"""The cpu device's pattern claims (see Device.claim): a recognized Gemm or Contraction
runs as luban's own GEMM (cpu_gemm.py) on the launch's buffers, through offset tables
built once per pattern; a convolution's windows are read in place (no im2col matrix).
An operand over a zero-padded view is first copied, padded, in one pass (`padded_copy`,
an OpenMP C routine) into a buffer from the device's pool."""
from __future__ import annotations

import ctypes
import threading

import numpy as np

from . import compile_cache, cpu_gemm

_COPY_SOURCE = r"""
#include <stdint.h>
#include <omp.h>
#define MAXD 16
/* dst (row-major, n + lo + hi per dim) = src (n per dim, strides ss) zero-padded: a row
   outside src is zeroed, a row inside gets its margins zeroed and its middle copied */
#define PAD(NAME, T) \
__attribute__((optimize("no-tree-loop-distribute-patterns"))) \
void NAME(T *dst, const T *src, int nd, const long *n, const long *lo, const long *hi, const long *ss) { \
  long out[MAXD], rows = 1; \
  for (int d = 0; d < nd; d++) out[d] = n[d] + lo[d] + hi[d]; \
  for (int d = 0; d < nd - 1; d++) rows *= out[d]; \
  long w = out[nd - 1], inner = n[nd - 1], l = lo[nd - 1], si = ss[nd - 1]; \
  _Pragma("omp parallel for if (rows * w >= 65536)") \
  for (long r = 0; r < rows; r++) { \
    T *o = dst + r * w; \
    long rem = r, off = 0; \
    int inside = 1; \
    for (int d = nd - 2; d >= 0; d--) { \
      long i = rem % out[d] - lo[d]; \
      rem /= out[d]; \
      if (i < 0 || i >= n[d]) { inside = 0; break; } \
      off += i * ss[d]; \
    } \
    if (!inside) { for (long j = 0; j < w; j++) o[j] = 0; continue; } \
    const T *s = src + off; \
    for (long j = 0; j < l; j++) o[j] = 0; \
    if (si == 1) for (long j = 0; j < inner; j++) o[l + j] = s[j]; \
    else for (long j = 0; j < inner; j++) o[l + j] = s[j * si]; \
    for (long j = l + inner; j < w; j++) o[j] = 0; \
  } \
}
PAD(luban_pad4, uint32_t)
PAD(luban_pad8, uint64_t)
"""
_MAXD = 16
_pad_fns: dict = {}
_pad_lock = threading.Lock()


def _pad_fn(itemsize: int, flags: tuple):
    if _pad_fns:  # built once: no lock on the per-copy path
        return _pad_fns[itemsize][0]
    with _pad_lock:
        if not _pad_fns:
            lib = ctypes.CDLL(str(compile_cache.build(_COPY_SOURCE, flags)))
            built = {}
            for n in (4, 8):
                fn = getattr(lib, f"luban_pad{n}")
                fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int] + [ctypes.c_void_p] * 4
                fn.restype = None
                built[n] = (fn, lib)  # lib keeps the shared object loaded
            _pad_fns.update(built)  # whole, so the unlocked check above never sees half of it
    return _pad_fns[itemsize][0]


def padded_copy(dst: np.ndarray, src: np.ndarray, pads: tuple, flags: tuple) -> None:
    """dst = src zero-padded by `pads` ((before, after) per dim, >= 0): dst row-major of
    the padded shape, src any strides; one pass, on all threads."""
    if dst.itemsize not in (4, 8) or dst.dtype != src.dtype or not 1 <= src.ndim <= _MAXD or 0 in src.shape:
        dst.fill(0)
        dst[tuple(slice(a, a + n) for n, (a, _) in zip(src.shape, pads))] = src
        return
    arr = lambda xs: (ctypes.c_long * len(xs))(*xs)
    _pad_fn(dst.itemsize, flags)(dst.ctypes.data, src.ctypes.data, src.ndim, arr(src.shape),
                                     arr([a for a, _ in pads]), arr([b for _, b in pads]),
                                     arr([st // src.itemsize for st in src.strides]))


class Program:
    """A claimed Gemm or Contraction: its offset tables, built once here and alive as long
    as the program (a conv's are ~1 MB); called on a launch's buffers."""

    def __init__(self, pattern):
        self.dtype = np.dtype(pattern.dtype)
        self.a, self.b = pattern.a, pattern.b
        self.tables = _gemm_tables(pattern) if pattern.kind == "gemm" else _contract_tables(pattern)

    def __call__(self, bufs: list, dev) -> None:
        held: list = []
        a, b = (_source(v, self.dtype, bufs, dev, held) for v in (self.a, self.b))
        self.tables.run(bufs[0].ptr, a, b, self.dtype.itemsize, dev.FLAGS)
        for buf in held:
            dev.free(buf)

    def operands(self):
        """((launch buffer index, byte offset) of A, of B), or None where an operand is
        read through a zero-padded copy (made per launch): for callers that run the
        tables' C function themselves (cpu_sequence)."""
        if getattr(self.a, "padded", None) is not None or getattr(self.b, "padded", None) is not None:
            return None
        return tuple((1 + v.index, v.offset * self.dtype.itemsize) for v in (self.a, self.b))


def program(pattern) -> Program:
    """The program that runs a Gemm or Contraction pattern on a launch's buffers."""
    return Program(pattern)


def gemm(g, bufs: list, dev) -> None:
    """out[p] = a[p] @ b[p] for a Gemm pattern (tables built for this call)."""
    program(g)(bufs, dev)


def contract(c, bufs: list, dev) -> None:
    """A Contraction: the "m" dims are A's rows, the "n" dims B's columns, the "k" dims
    summed, the "b" dims a batch of such products; each operand read where its view
    points, in its input or in a zero-padded copy of it (tables built for this call)."""
    program(c)(bufs, dev)


def _gemm_tables(g) -> cpu_gemm.Tables:
    off = cpu_gemm.offsets
    (ab, ar, ac), (bb, br, bc), (ob, orow, ocol) = g.a.strides, g.b.strides, g.out_strides
    return cpu_gemm.Tables.oriented(off([g.m], [ar]), off([g.k], [ac]), off([g.n], [bc]), off([g.k], [br]),
                                    off([g.m], [orow]), off([g.n], [ocol]),
                                    off([g.batch], [ab]), off([g.batch], [bb]), off([g.batch], [ob]))


def _contract_tables(c) -> cpu_gemm.Tables:
    dims = {r: [d for d, x in enumerate(c.roles) if x == r] for r in "bmnk"}
    out = dict(zip([d for d, x in enumerate(c.roles) if x != "k"], c.out_strides))
    off = lambda role, strides: cpu_gemm.offsets([c.sizes[d] for d in dims[role]], [strides[d] for d in dims[role]])
    return cpu_gemm.Tables.oriented(off("m", c.a.strides), off("k", c.a.strides), off("n", c.b.strides),
                                    off("k", c.b.strides), off("m", out), off("n", out), off("b", c.a.strides),
                                    off("b", c.b.strides), off("b", out))


def _source(v, dt: np.dtype, bufs: list, dev, held: list) -> int:
    """The address of an operand's element `offset`: in the input's buffer, or (a
    Contraction's) in the row-major zero-padded copy of its view that `padded` describes."""
    if getattr(v, "padded", None) is None:
        return bufs[1 + v.index].ptr + v.offset * dt.itemsize
    p = v.padded
    flat = bufs[1 + p.index][: len(bufs[1 + p.index]) // dt.itemsize * dt.itemsize].view(dt)
    src = np.lib.stride_tricks.as_strided(flat[p.offset:], p.shape, [s * dt.itemsize for s in p.strides])
    shape = [n + lo + hi for n, (lo, hi) in zip(p.shape, p.pads)]
    held.append(dev.alloc(int(np.prod(shape, dtype=np.int64)) * dt.itemsize))
    padded_copy(np.ndarray(shape, dt, buffer=held[-1]), src, p.pads, dev.FLAGS)
    return held[-1].ptr + v.offset * dt.itemsize
