"""luban's own GEMM (runtime/cpu_gemm.py) on problems in offset-table form against NumPy:
each of its paths (one problem cut among the threads, a batch of problems, K split
among the threads with partial sums added), operands read in place or packed, row
and column counts off the register tile, float32 and float64, and K = 0."""
import platform

import numpy as np
import pytest

from luban.runtime import cpu
from luban.runtime.cpu_gemm import Tables, offsets


# the AVX-512 build (this machine's -march=native) and, on x86, the build without it (the
# 12-row AVX2 tile, no in-register transposes)
FLAGS = [cpu.compile_flags()] + ([cpu.compile_flags() + ("-mno-avx512f",)]
                                 if platform.machine() in ("x86_64", "AMD64") else [])


def _gemm(a, b, out, transpose_b=False, flags=None):
    """out[q] = a[q] @ b[q] (b stored transposed if transpose_b) through the tables."""
    nb, m, k = a.shape
    n = out.shape[2]
    bn, bk = (offsets([n], [k]), offsets([k], [1])) if transpose_b else (offsets([n], [1]), offsets([k], [n]))
    t = Tables(offsets([m], [k]), offsets([k], [1]), bn, bk, offsets([m], [n]), offsets([n], [1]),
               offsets([nb], [m * k]), offsets([nb], [k * n]), offsets([nb], [m * n]))
    t.run(out.ctypes.data, a.ctypes.data, b.ctypes.data, a.itemsize, flags or cpu.compile_flags())


@pytest.mark.parametrize("flags", FLAGS, ids=["native", "no_avx512"][:len(FLAGS)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize("shape", [(1, 300, 260, 70), (1, 37, 45, 5000), (1, 16, 32, 9000), (5, 33, 47, 29),
                                   (1, 1, 1, 1), (3, 64, 64, 32), (1, 130, 17, 300), (1, 600, 520, 1500),
                                   (1, 256, 64, 2100)])
def test_gemm_matches_numpy(shape, transpose_b, dtype, flags):
    """(nb, m, n, k): (1, 37, 45, 5000) and (1, 16, 32, 9000) take the split-K path, and
    (1, 256, 64, 2100) the row blocks instead (with 16-row tiles); in (1, 600, 520, 1500)
    C is added to once per 256-deep slice of K. With transpose_b, B is packed whole once
    where several row blocks share it (300, 600, 130 and 256 rows), with a partial last
    panel (260, 520 and 17 columns)."""
    nb, m, n, k = shape
    rng = np.random.default_rng(sum(shape))
    a = rng.standard_normal((nb, m, k)).astype(dtype)
    b = rng.standard_normal((nb, k, n)).astype(dtype)
    stored_b = np.ascontiguousarray(b.transpose(0, 2, 1)) if transpose_b else b
    out = np.full((nb, m, n), np.nan, dtype)  # every element must be written
    _gemm(a, stored_b, out, transpose_b, flags)
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(out, want, rtol=tol * 10, atol=tol * np.sqrt(k) * np.abs(want).max())


def test_gemm_with_empty_sum_writes_zeros():
    a, b = np.ones((1, 20, 0), np.float32), np.ones((1, 0, 18), np.float32)
    out = np.full((1, 20, 18), np.nan, np.float32)
    _gemm(a, b, out)
    np.testing.assert_array_equal(out, 0)


def test_gemm_reads_through_negative_strides():
    """A read backwards along its rows: the tables hold negative offsets from its base."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((40, 50)).astype(np.float32)
    b = rng.standard_normal((50, 24)).astype(np.float32)
    out = np.empty((40, 24), np.float32)
    last = a[39:]  # the base pointer: row 39; row i sits (39 - i) * 50 elements before it
    t = Tables(offsets([40], [-50]) + 0, offsets([50], [1]), offsets([24], [1]), offsets([50], [24]),
               offsets([40], [24]), offsets([24], [1]))
    t.run(out.ctypes.data, last.ctypes.data, b.ctypes.data, 4, cpu.compile_flags())
    np.testing.assert_allclose(out, a[::-1] @ b, rtol=1e-5, atol=1e-4)


def test_column_major_output_is_computed_transposed():
    """C stored column-major: oriented() computes C^T = B^T A^T, so C's unit stride runs
    along the vectors, and the result is the same."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((70, 40)).astype(np.float32)
    b = rng.standard_normal((40, 50)).astype(np.float32)
    out = np.empty((50, 70), np.float32)  # C.T, row-major: C is column-major in it
    t = Tables.oriented(offsets([70], [40]), offsets([40], [1]), offsets([50], [1]), offsets([40], [50]),
                        offsets([70], [1]), offsets([50], [70]))
    assert t.swapped
    t.run(out.ctypes.data, a.ctypes.data, b.ctypes.data, 4, cpu.compile_flags())
    np.testing.assert_allclose(out.T, a @ b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("shape", [(1, 1, 300, 2048), (1, 1, 33, 7), (2, 1, 64, 4096), (1, 1, 40, 9000)])
def test_single_row_products(shape):
    """M = 1 (a vector times a matrix) takes the one-row kernel, packed or in place, with
    K not a multiple of its four chains; (1, 1, 40, 9000) splits K among the threads."""
    nb, m, n, k = shape
    rng = np.random.default_rng(k)
    a = rng.standard_normal((nb, m, k)).astype(np.float32)
    for transpose_b in (False, True):
        b = rng.standard_normal((nb, k, n)).astype(np.float32)
        out = np.full((nb, m, n), np.nan, np.float32)
        _gemm(a, np.ascontiguousarray(b.transpose(0, 2, 1)) if transpose_b else b, out, transpose_b)
        want = np.matmul(a.astype(np.float64), b.astype(np.float64))
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6 * np.sqrt(k) * np.abs(want).max())


def test_forked_child_runs_the_gemm(tmp_path):
    """A process that ran only GEMMs (no generated kernel), then forked: the child's GEMM
    must not hang in GNU OpenMP (a DataLoader worker); in a fresh process, as the parent
    of the test suite has loaded kernels already."""
    import os
    import subprocess
    import sys
    script = tmp_path / "fork.py"
    script.write_text("""
import os, sys, time, numpy as np
from luban.runtime import cpu, cpu_gemm
off = cpu_gemm.offsets
a = np.random.rand(256, 256).astype(np.float32); c = np.empty_like(a)
t = cpu_gemm.Tables(off([256], [256]), off([256], [1]), off([256], [1]), off([256], [256]),
                    off([256], [256]), off([256], [1]))
t.run(c.ctypes.data, a.ctypes.data, a.ctypes.data, 4, cpu.compile_flags())
pid = os.fork()
if pid == 0:
    t.run(c.ctypes.data, a.ctypes.data, a.ctypes.data, 4, cpu.compile_flags())
    os._exit(0 if np.allclose(c, a @ a, rtol=1e-4) else 1)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        sys.exit(os.waitstatus_to_exitcode(status))
    time.sleep(0.05)
os.kill(pid, 9)  # hung: leave no orphan behind
os.waitpid(pid, 0)
sys.exit(3)
""")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": repo, "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, str(script)], env=env, timeout=180, capture_output=True, text=True)
    assert done.returncode != 3, "the forked child hung in the GEMM's parallel region"
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("flags", FLAGS, ids=["native", "no_avx512"][:len(FLAGS)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 288, 32, 9000), (1, 72, 40, 300), (2, 150, 33, 70)])
def test_a_panels_read_in_place(shape, dtype, flags):
    """A[i, kk] at kk * 40 + i: rows consecutive, k a short stride apart, windows that
    overlap (a convolution's weight gradient over a channels-last input). Its full
    16-row panels are read where they lie, not packed (in_place_a), through the split-K
    path (288 x 32 by 9000), row blocks of one problem, and a batch; the last partial
    panel (72 and 150 rows) is packed as usual. Every element checked against NumPy."""
    nb, m, n, k = shape
    pitch, size = 40, k * 40 + m
    rng = np.random.default_rng(m)
    store = rng.standard_normal((nb, size)).astype(dtype)
    a = np.lib.stride_tricks.as_strided(store, (nb, m, k), (size * store.itemsize, store.itemsize,
                                                           pitch * store.itemsize))
    b = rng.standard_normal((nb, k, n)).astype(dtype)
    out = np.full((nb, m, n), np.nan, dtype)
    t = Tables(offsets([m], [1]), offsets([k], [pitch]), offsets([n], [1]), offsets([k], [n]), offsets([m], [n]),
               offsets([n], [1]), offsets([nb], [size]), offsets([nb], [k * n]), offsets([nb], [m * n]))
    t.run(out.ctypes.data, store.ctypes.data, b.ctypes.data, store.itemsize, flags)
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(out, want, rtol=tol * 10, atol=tol * np.sqrt(k) * np.abs(want).max())


@pytest.mark.parametrize("flags", FLAGS, ids=["native", "no_avx512"][:len(FLAGS)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("heads", [(8, 64, 64, 32), (8, 64, 32, 64), (3, 40, 48, 20), (2, 16, 16, 100)])
def test_attention_heads_read_in_place(heads, dtype, flags):
    """Attention's per-head products over a projection's output: A's rows a row pitch
    apart and consecutive along k (q, or the probabilities) are read in place for K up
    to 64 (in_place_a, case 2), and B's rows far apart (k or v) are copied into a panel
    (far_b); a batch of heads, the last partial row panel (40 rows), and K past 64
    (packed as usual) checked against NumPy."""
    nb, m, n, k = heads
    pitch = 3 * max(k, n) + 5  # a fused q/k/v projection's row, padded to an odd pitch
    rng = np.random.default_rng(k)
    store = rng.standard_normal((nb, max(m, k) * pitch)).astype(dtype)
    a = np.lib.stride_tricks.as_strided(store, (nb, m, k), (store.strides[0], pitch * store.itemsize, store.itemsize))
    bsrc = store[:, 2 * max(k, n):]  # another third of the same rows, as v
    b = np.lib.stride_tricks.as_strided(bsrc, (nb, k, n), (store.strides[0], pitch * store.itemsize, store.itemsize))
    out = np.full((nb, m, n), np.nan, dtype)
    t = Tables(offsets([m], [pitch]), offsets([k], [1]), offsets([n], [1]), offsets([k], [pitch]), offsets([m], [n]),
               offsets([n], [1]), offsets([nb], [store.shape[1]]), offsets([nb], [store.shape[1]]) + 2 * max(k, n),
               offsets([nb], [m * n]))
    t.run(out.ctypes.data, store.ctypes.data, store.ctypes.data, store.itemsize, flags)
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(out, want, rtol=tol * 10, atol=tol * np.sqrt(k) * np.abs(want).max())
