"""The cpu device's pattern claims (see Device.claim): a recognized Gemm or Contraction
runs as NumPy's matmul on views of the launch's buffers, i.e. in the OpenBLAS that
NumPy's wheel bundles; no dependency beyond NumPy, and no extra copy where BLAS takes
the strides. (scipy.linalg.blas.sgemm calls an OpenBLAS too, but needs scipy and
Fortran-ordered arrays.)

A Contraction's operands (a convolution's windows: im2col) are first gathered into
matrices by `strided_copy`, a small OpenMP C routine (NumPy's copy of a 6-D strided view
runs on one thread: 1.3-1.8x slower on W2's im2col), into buffers from the device's pool
(a fresh 75 MB array page-faults on first touch)."""
from __future__ import annotations

import ctypes
import threading

import numpy as np

from . import compile_cache

# dst[i] = src[i] over an N-d index space (nd >= 2), both sides at element strides. The
# threads share the rows (every index but the last); a thread walks the second-to-last
# dim with plain pointer steps and the dims above it with an odometer, and copies each
# row with an inline loop (an im2col row is often 32 elements: a memcpy call and an
# odometer step per row cost more than the copy)
_COPY_SOURCE = r"""
#include <stdint.h>
#include <omp.h>
#define MAXD 16
#define COPY(NAME, T) \
__attribute__((optimize("no-tree-loop-distribute-patterns"))) \
void NAME(T *dst, const T *src, int nd, const long *size, const long *ds, const long *ss) { \
  long inner = size[nd - 1], di = ds[nd - 1], si = ss[nd - 1]; \
  long mid = size[nd - 2], dm = ds[nd - 2], sm = ss[nd - 2], rows = mid; \
  for (int d = 0; d < nd - 2; d++) rows *= size[d]; \
  _Pragma("omp parallel if (rows * inner >= 65536)") \
  { \
    int nt = omp_get_num_threads(), t = omp_get_thread_num(); \
    long q = rows * t / nt, q1 = rows * (t + 1) / nt, idx[MAXD], doff = 0, soff = 0; \
    long m = q % mid, rem = q / mid; \
    for (int d = nd - 3; d >= 0; d--) { \
      idx[d] = rem % size[d]; rem /= size[d]; doff += idx[d] * ds[d]; soff += idx[d] * ss[d]; \
    } \
    while (q < q1) { \
      long count = mid - m < q1 - q ? mid - m : q1 - q; \
      T *o = dst + doff + m * dm; const T *s = src + soff + m * sm; \
      if (di == 1 && si == 1) \
        for (long k = 0; k < count; k++, o += dm, s += sm) for (long j = 0; j < inner; j++) o[j] = s[j]; \
      else \
        for (long k = 0; k < count; k++, o += dm, s += sm) for (long j = 0; j < inner; j++) o[j * di] = s[j * si]; \
      q += count; m += count; \
      if (m == mid) { \
        m = 0; \
        for (int d = nd - 3; d >= 0; d--) { \
          doff += ds[d]; soff += ss[d]; \
          if (++idx[d] < size[d]) break; \
          doff -= ds[d] * size[d]; soff -= ss[d] * size[d]; idx[d] = 0; \
        } \
      } \
    } \
  } \
}
COPY(luban_copy4, uint32_t)
COPY(luban_copy8, uint64_t)
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
_copy_fns: dict = {}
_copy_lock = threading.Lock()


def _copy_fn(itemsize: int, flags: tuple):
    if _copy_fns:  # built once: no lock on the per-copy path
        return _copy_fns[itemsize]
    with _copy_lock:
        if not _copy_fns:
            lib = ctypes.CDLL(str(compile_cache.build(_COPY_SOURCE, flags)))
            built = {}
            for n in (4, 8):
                fns = []
                for kind, ptrs in (("copy", 3), ("pad", 4)):
                    fn = getattr(lib, f"luban_{kind}{n}")
                    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int] + [ctypes.c_void_p] * ptrs
                    fn.restype = None
                    fns.append(fn)
                built[n] = (*fns, lib)
            _copy_fns.update(built)  # whole, so the unlocked check above never sees half of it
    return _copy_fns[itemsize]


def _merge_dims(size: list, ds: list, ss: list) -> tuple:
    """Drop size-1 dims and merge neighbours that are one run on both sides: fewer
    odometer steps, longer inner loops."""
    out = [[n, a, b] for n, a, b in zip(size, ds, ss) if n != 1] or [[1, 1, 1]]
    merged = [out[0]]
    for n, a, b in out[1:]:
        prev = merged[-1]
        if prev[1] == a * n and prev[2] == b * n:
            prev[0], prev[1], prev[2] = prev[0] * n, a, b
        else:
            merged.append([n, a, b])
    return tuple(zip(*merged))


def strided_copy(dst: np.ndarray, src: np.ndarray, flags: tuple) -> None:
    """dst[...] = src for same-shape arrays of one 4- or 8-byte dtype, on all threads.
    Strides may be negative or zero in src; dst must not overlap itself."""
    size, ds, ss = _merge_dims(list(dst.shape), [s // dst.itemsize for s in dst.strides],
                               [s // src.itemsize for s in src.strides])
    if 0 in size:
        return
    if len(size) == 1:  # the C routine walks at least two dims
        size, ds, ss = (1,) + size, (0,) + ds, (0,) + ss
    if len(size) > _MAXD or dst.itemsize not in (4, 8) or dst.dtype != src.dtype:
        dst[...] = src
        return
    arr = lambda xs: (ctypes.c_long * len(xs))(*xs)
    copy, item = _copy_fn(dst.itemsize, flags)[0], dst.itemsize
    d0, s0 = dst.ctypes.data, src.ctypes.data
    n = size[-1]
    if len(size) == 2 and size[0] == 1 and n >= _SPLIT_ROW << 4:  # one long run: cut into rows for the threads
        rows = n // _SPLIT_ROW
        copy(d0, s0, 2, arr((rows, _SPLIT_ROW)), arr((_SPLIT_ROW * ds[1], ds[1])), arr((_SPLIT_ROW * ss[1], ss[1])))
        done = rows * _SPLIT_ROW
        size, d0, s0 = (1, n - done), d0 + done * ds[1] * item, s0 + done * ss[1] * item
        if size[1] == 0:
            return
    copy(d0, s0, len(size), arr(size), arr(ds), arr(ss))


_SPLIT_ROW = 4096


def padded_copy(dst: np.ndarray, src: np.ndarray, pads: tuple, flags: tuple) -> None:
    """dst = src zero-padded by `pads` ((before, after) per dim, >= 0): dst row-major of
    the padded shape, src any strides; one pass, on all threads."""
    if dst.itemsize not in (4, 8) or dst.dtype != src.dtype or not 1 <= src.ndim <= _MAXD or 0 in src.shape:
        dst.fill(0)
        dst[tuple(slice(a, a + n) for n, (a, _) in zip(src.shape, pads))] = src
        return
    arr = lambda xs: (ctypes.c_long * len(xs))(*xs)
    _copy_fn(dst.itemsize, flags)[1](dst.ctypes.data, src.ctypes.data, src.ndim, arr(src.shape),
                                     arr([a for a, _ in pads]), arr([b for _, b in pads]),
                                     arr([st // src.itemsize for st in src.strides]))


def _strided(buf, dt: np.dtype, offset: int, shape: tuple, strides: tuple) -> tuple:
    """(view, blas_ok): the (batch, rows, cols) array at element `offset` of `buf` with
    element `strides`, and whether BLAS can read each matrix as it is. A size-1 dim gets
    the stride that makes its matrix row- or column-major (its stride never matters)."""
    _, rows, cols = shape
    sb, sr, sc = strides
    ok = False
    for r_, c_ in (((cols if rows == 1 else sr), (1 if cols == 1 else sc)),  # row-major
                   ((1 if rows == 1 else sr), (rows if cols == 1 else sc))):  # column-major
        if (c_ == 1 and r_ >= cols) or (r_ == 1 and c_ >= rows):
            sr, sc, ok = r_, c_, True
            break
    view = np.ndarray(shape, dt, buffer=buf, offset=offset * dt.itemsize,
                      strides=(sb * dt.itemsize, sr * dt.itemsize, sc * dt.itemsize))
    return view, ok


def gemm(g, bufs: list, dev) -> None:
    """out = a @ b by NumPy's matmul, which calls BLAS when every matrix has strides
    BLAS takes, else a slow loop: so an operand BLAS cannot read in place is copied
    first, and an output it cannot write is written after."""
    dt = np.dtype(g.dtype)
    ops, held = [], []
    for x, shape in ((g.a, (g.batch, g.m, g.k)), (g.b, (g.batch, g.k, g.n))):
        view, ok = _strided(bufs[1 + x.index], dt, x.offset, shape, x.strides)
        ops.append(view if ok else _gathered(view, dev, held))
    out, ok = _strided(bufs[0], dt, 0, (g.batch, g.m, g.n), g.out_strides)
    if g.batch == 1:  # a 2-D matmul skips the gufunc's batch loop
        ops, out = [x[0] for x in ops], out[0]
    if ok:
        np.matmul(*ops, out=out)
    else:
        strided_copy(out, np.matmul(*ops), dev.FLAGS)
    _release(held, dev)


def _scratch(shape: list, dt: np.dtype, dev, held: list) -> np.ndarray:
    """A row-major array in a buffer from the device's pool (fresh pages from the OS
    cost a page fault each on first touch: ~10 ms per 75 MB im2col matrix), listed in
    `held` for _release once the claim is done with it."""
    n = int(np.prod(shape, dtype=np.int64))
    held.append(dev.alloc(n * dt.itemsize))
    return np.ndarray(shape, dt, buffer=held[-1])


def _release(held: list, dev) -> None:
    for buf in held:
        dev.free(buf)


def _gathered(view: np.ndarray, dev, held: list) -> np.ndarray:
    out = _scratch(list(view.shape), view.dtype, dev, held)
    strided_copy(out, view, dev.FLAGS)
    return out


def _flat(buf, dt: np.dtype) -> np.ndarray:
    return buf[: len(buf) // dt.itemsize * dt.itemsize].view(dt)


def _source(v, dt: np.dtype, bufs: list, dev, held: list) -> np.ndarray:
    """The flat array a Contraction operand's offset and strides address: the input's
    buffer, or the row-major zero-padded copy of its view that `padded` describes."""
    if v.padded is None:
        return _flat(bufs[1 + v.index], dt)
    p = v.padded
    src = np.lib.stride_tricks.as_strided(_flat(bufs[1 + p.index], dt)[p.offset:], p.shape,
                                          [s * dt.itemsize for s in p.strides])
    out = _scratch([n + a + b for n, (a, b) in zip(p.shape, p.pads)], dt, dev, held)
    padded_copy(out, src, p.pads, dev.FLAGS)
    return out.reshape(-1)


def _matrix(flat: np.ndarray, st: tuple, offset: int, sizes: tuple, batch: list, rows: list, k_: list, dev,
            held: list) -> np.ndarray:
    """The operand at element `offset` + sum of `st`[d] * i_d of `flat`, gathered into a
    (*batch, rows, k) array (size 1 in the batch dims it does not vary in, which matmul
    broadcasts), copied in whichever of rows-inner or k-inner order gives the copy the
    longer inner loop (one of 3 taps is slow); the result may be a transposed view (BLAS
    takes either)."""
    bshape = [sizes[d] if st[d] else 1 for d in batch]
    size = lambda ds: int(np.prod([sizes[d] for d in ds], dtype=np.int64))
    # the copy's inner loop: longer is better, unit stride twice as good (a stride-2 conv's
    # 16 output columns beat its 3 contiguous taps: 1.5-2 GB/s with the taps inside)
    run = lambda ds: sizes[ds[-1]] * (2 if abs(st[ds[-1]]) == 1 else 1) if ds else 0
    k_inner = run(k_) >= run(rows)
    order = batch + (rows + k_ if k_inner else k_ + rows)
    view = np.lib.stride_tricks.as_strided(flat[offset:], [sizes[d] if st[d] or d not in batch else 1 for d in order],
                                           [st[d] * flat.itemsize for d in order], writeable=False)
    m = _gathered(view, dev, held).reshape(bshape + ([size(rows), size(k_)] if k_inner else [size(k_), size(rows)]))
    return m if k_inner else m.swapaxes(-1, -2)


# An im2col matrix is gathered and multiplied a slice at a time, this many bytes or so:
# the slice is still in cache when BLAS packs it (W2's forward conv: 75 MB gathered
# whole, then read back by the GEMM from memory)
CHUNK_BYTES = 8 << 20


def contract(c, bufs: list, dev) -> None:
    """A Contraction as one (broadcast-batched) matmul. The output is row-major over its
    dims; its innermost run of one role (m or n) and the run of the other role before it
    are the matrix, every dim outside is a batch dim: a convolution's (N, O, H, W) output
    is N matrices (O, H*W) = weight (O, K) @ im2col (K, H*W), written in place."""
    dt = np.dtype(c.dtype)
    sizes, roles = c.sizes, c.roles
    out_dims = [d for d in range(len(sizes)) if roles[d] != "k"]
    k_ = [d for d in range(len(sizes)) if roles[d] == "k"]
    inner = _run(out_dims, roles, len(out_dims))
    outer = _run(out_dims, roles, len(out_dims) - len(inner)) if len(inner) < len(out_dims) else []
    if not outer or "b" in (roles[inner[0]], roles[outer[0]]):
        outer, inner = [], []  # no matrix in the output's layout: batch of (m, n), written after
    batch = [d for d in out_dims if d not in inner + outer]
    if inner:
        rows_a, rows_b = (outer, inner) if roles[inner[0]] == "n" else (inner, outer)
    else:
        batch = [d for d in out_dims if roles[d] == "b"]
        rows_a, rows_b = [d for d in out_dims if roles[d] == "m"], [d for d in out_dims if roles[d] == "n"]
    held: list = []
    ops = [(_source(v, dt, bufs, dev, held), v.strides, v.offset, rows) for v, rows in ((c.a, rows_a), (c.b, rows_b))]
    size = lambda ds: int(np.prod([sizes[d] for d in ds], dtype=np.int64))
    flat = _flat(bufs[0], dt)[:size(out_dims)]  # the output is row-major over out_dims
    if not inner:
        a, b = (_matrix(f, st, off, sizes, batch, rows, k_, dev, held) for f, st, off, rows in ops)
        shape = [sizes[d] for d in batch + rows_a + rows_b]
        res = np.matmul(a, b.swapaxes(-1, -2))  # size 1 in batch dims neither operand varies in
        res = np.broadcast_to(res, [sizes[d] for d in batch] + list(res.shape[-2:])).reshape(shape)
        pos = {d: i for i, d in enumerate(out_dims)}
        strided_copy(flat.reshape([sizes[d] for d in out_dims]).transpose([pos[d] for d in batch + rows_a + rows_b]),
                     res, dev.FLAGS)
        _release(held, dev)
        return
    mat = flat.reshape([sizes[d] for d in batch] + [size(outer), size(inner)])
    # slices along the output's first batch dim, else along the first summed dim, whose
    # partial products are added up (a weight gradient: a sum over the batch's images)
    first = batch[0] if batch else k_[0] if k_ else None
    summed = first is not None and not batch
    fixed = [None if first is not None and st[first] else _matrix(f, st, off, sizes, batch, rows, k_, dev, held)
             for f, st, off, rows in ops]  # operands that do not vary along the slices: gathered once
    n = sizes[first] if first is not None else 1
    per = sum(size(rows + k_) for (_, st, _, rows), m in zip(ops, fixed) if m is None) * dt.itemsize
    per = per // n if summed else per
    step = n if per == 0 else max(1, min(n, CHUNK_BYTES // per))
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        sub = tuple(hi - lo if d == first else x for d, x in enumerate(sizes))
        part: list = []
        a, b = (m if m is not None else _matrix(f, st, off + lo * st[first], sub, batch, rows, k_, dev, part)
                for m, (f, st, off, rows) in zip(fixed, ops))
        out = mat if first is None or summed else mat[lo:hi]
        x, y = (a, b.swapaxes(-1, -2)) if roles[inner[0]] == "n" else (b, a.swapaxes(-1, -2))
        if summed and lo > 0:
            out += np.matmul(x, y)
        else:
            np.matmul(x, y, out=out)
        _release(part, dev)
    _release(held, dev)


def _run(dims: list, roles: str, end: int) -> list:
    """The longest run of dims[:end] ending at end - 1 whose roles are all the same."""
    start = end
    while start > 0 and roles[dims[start - 1]] == roles[dims[end - 1]]:
        start -= 1
    return dims[start:end]
