"""The cpu device's BLAS claims at the level of their descriptions: strided_copy (the
parallel im2col gather) against NumPy's own copy, and contract() on Contraction
patterns built by hand, whose roles come in every order the output layout allows
(matrix in place, transposed, or none: batch innermost), against np.einsum."""
import itertools

import numpy as np
import pytest

from luban.codegen.patterns import Contraction, Padded, View
from luban.runtime import get_device
from luban.runtime import cpu_blas
from luban.runtime.cpu_blas import contract, padded_copy, strided_copy

pytestmark = pytest.mark.xdist_group("patterns")


@pytest.fixture(scope="module")
def cpu():
    return get_device("cpu")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
@pytest.mark.parametrize("case", ["windows", "flip", "broadcast", "transpose", "empty", "scalar", "many_dims",
                                  "long_run", "long_run_strided"])
def test_strided_copy_matches_numpy(case, dtype, cpu):
    rng = np.random.default_rng(1)
    base = (rng.standard_normal(140000) * 100).astype(dtype)
    if case == "windows":  # im2col of a padded image batch, k-major
        x = base[: 4 * 3 * 10 * 10].reshape(4, 3, 10, 10)
        src = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3)).transpose(1, 4, 5, 0, 2, 3)
    elif case == "flip":
        src = base[:6 * 7 * 5].reshape(6, 7, 5)[::-1, :, ::-2]
    elif case == "broadcast":
        src = np.broadcast_to(base[:50].reshape(5, 1, 10), (5, 300, 10))
    elif case == "transpose":
        src = base[:300 * 120].reshape(300, 120).T
    elif case == "long_run":  # one contiguous run, cut into rows for the threads, plus a tail
        src = base[: 4096 * 20 + 123]
    elif case == "long_run_strided":
        src = base[::-2][: 4096 * 17 + 5]
    elif case == "empty":
        src = base[:0].reshape(3, 0, 4)
    elif case == "scalar":
        src = base[:1].reshape(())
    else:  # more dims than the C routine takes: NumPy does it
        src = base[: 2 ** 17].reshape((2,) * 17).transpose(list(range(16, -1, -1)))
    dst = np.full(src.shape, -1, dtype)
    strided_copy(dst, src, cpu.FLAGS)
    np.testing.assert_array_equal(dst, src)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ["image", "flipped", "one_dim", "no_pad", "wide", "empty_dim"])
def test_padded_copy_matches_np_pad(case, dtype, cpu):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3, 10, 12)).astype(dtype)
    src, pads = {
        "image": (x, ((0, 0), (0, 0), (1, 1), (1, 1))),
        "flipped": (x[:, ::-1, :, ::-2], ((1, 0), (0, 2), (2, 1), (0, 3))),  # negative strides
        "one_dim": (x[0, 0, 0], ((3, 5),)),
        "no_pad": (x.transpose(0, 2, 1, 3), ((0, 0),) * 4),
        "wide": (x[:1, :1], ((0, 0), (0, 0), (40, 40), (0, 70))),  # more padding than data
        "empty_dim": (x[:, :0], ((1, 1), (1, 1), (0, 0), (0, 0))),
    }[case]
    dst = np.full([n + a + b for n, (a, b) in zip(src.shape, pads)], np.nan, dtype)  # stale contents
    padded_copy(dst, src, pads, cpu.FLAGS)
    np.testing.assert_array_equal(dst, np.pad(src, pads))


def _buffer(cpu, arr):
    buf = cpu.alloc(arr.nbytes)
    cpu.copyin(buf, np.ascontiguousarray(arr))
    return buf


def _einsum_spec(roles: str) -> tuple:
    letters = "abcdefgh"[:len(roles)]
    a = "".join(c for c, r in zip(letters, roles) if r in "bmk")
    b = "".join(c for c, r in zip(letters, roles) if r in "bnk")
    out = "".join(c for c, r in zip(letters, roles) if r != "k")
    return a, b, out


# every order of one dim per role, and runs of several dims of a role, split or not
ROLE_ORDERS = sorted({"".join(p) for p in itertools.permutations("bmnk")}) + \
    ["mnk", "nmk", "kmn", "bbmnk", "mbnk", "mmnnk", "nmmkk", "mnmkk", "kbnmb", "mmk"[:2] + "nkk"]


@pytest.mark.parametrize("chunk", ["whole", "chunked"])
@pytest.mark.parametrize("roles", ROLE_ORDERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_contract_every_layout(roles, dtype, chunk, cpu, monkeypatch):
    """Each operand is a permuted view of its own buffer (strides in any order); the
    output is row-major over the non-k dims in their order. "chunked": the im2col slices
    are a few elements, so the output's first batch dim is done in uneven pieces."""
    if chunk == "chunked":
        monkeypatch.setattr(cpu_blas, "CHUNK_BYTES", 3 * 8 * 7)
    rng = np.random.default_rng(len(roles))
    sizes = tuple(int(s) for s in rng.integers(2, 6, len(roles)))
    sa, sb, so = _einsum_spec(roles)
    ops, views = [], []
    for index, spec in enumerate((sa, sb)):
        dims = [d for d, c in enumerate("abcdefgh"[:len(roles)]) if c in spec]
        perm = rng.permutation(len(dims))  # storage order of the operand's dims
        store = rng.standard_normal([sizes[dims[p]] for p in perm]).astype(dtype)
        ops.append(np.transpose(store, np.argsort(perm)))
        st = [0] * len(roles)
        row_major = np.cumprod([1] + [sizes[dims[p]] for p in perm[::-1]])[:-1][::-1]
        for i, p in enumerate(perm):
            st[dims[p]] = int(row_major[i])
        views.append((store, View(index, 0, tuple(st))))
    out_sizes = [s for s, r in zip(sizes, roles) if r != "k"]
    out_strides = tuple(int(x) for x in np.cumprod([1] + out_sizes[::-1])[:-1][::-1])
    c = Contraction(np.dtype(dtype).name, sizes, roles, views[0][1], views[1][1], out_strides)
    out = cpu.alloc(int(np.prod(out_sizes)) * np.dtype(dtype).itemsize)
    contract(c, [out, _buffer(cpu, views[0][0]), _buffer(cpu, views[1][0])], cpu)
    got = np.empty(out_sizes, dtype)
    cpu.copyout(got, out)
    want = np.einsum(f"{sa},{sb}->{so}", *ops)
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


def test_contract_over_padded_input(cpu):
    """A 1-d convolution: windows over a zero-padded copy of x, times the weight."""
    rng = np.random.default_rng(3)
    n, c, length, o, k, pad = 16, 6, 40, 5, 3, 1
    x = rng.standard_normal((n, c, length)).astype(np.float32)
    w = rng.standard_normal((o, c, k)).astype(np.float32)
    padded_len = length + 2 * pad
    out_len = padded_len - k + 1
    # dims (n, o, t, c, j): out[n, o, t] = sum_{c, j} xpad[n, c, t + j] * w[o, c, j]
    xview = View(0, 0, (c * padded_len, 0, 1, padded_len, 1),
                 Padded(0, 0, (n, c, length), (c * length, length, 1), ((0, 0), (0, 0), (pad, pad))))
    wview = View(1, 0, (0, c * k, 0, k, 1))
    con = Contraction("float32", (n, o, out_len, c, k), "mnmkk", xview, wview, (o * out_len, out_len, 1))
    prog = cpu.claim(con)
    assert prog is not None
    stale = cpu.alloc(n * c * padded_len * 4)  # the pool hands this back for the padded copy:
    stale.view(np.float32)[:] = np.nan  # its border must be written, not assumed zero
    cpu.free(stale)
    out = cpu.alloc(n * o * out_len * 4)
    prog.run([out, _buffer(cpu, x), _buffer(cpu, w)])
    got = np.empty((n, o, out_len), np.float32)
    cpu.copyout(got, out)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad)))
    want = np.einsum("nctj,ocj->not", np.lib.stride_tricks.sliding_window_view(xp, k, axis=2), w)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
