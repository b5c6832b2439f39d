"""The cpu device's claims at the level of their descriptions: padded_copy against
np.pad, and contract() on Contraction patterns built by hand, whose roles come in every
order (each operand's dims stored in any order), against np.einsum."""
import itertools

import numpy as np
import pytest

from luban.codegen.patterns import Contraction, Padded, View
from luban.runtime import get_device
from luban.runtime.cpu_claims import contract, padded_copy

pytestmark = pytest.mark.xdist_group("patterns")


@pytest.fixture(scope="module")
def cpu():
    return get_device("cpu")


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


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("roles", ROLE_ORDERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_contract_every_layout(roles, dtype, big, cpu):
    """Each operand is a permuted view of its own buffer (strides in any order); the
    output is row-major over the non-k dims in their order. big: sizes past the GEMM's
    register tile (16 rows, 16 or 8 columns), so whole and partial tiles both occur."""
    rng = np.random.default_rng(len(roles))
    sizes = tuple(int(s) for s in rng.integers(*((9, 40) if big else (2, 6)), len(roles)))
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
    want = np.einsum(f"{sa},{sb}->{so}", *(x.astype(np.float64) for x in ops))
    scale = np.abs(want).max()  # summing up to ~1600 products: float32 rounding grows with it
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=(1e-6 if dtype == np.float32 else 1e-13) * scale)


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
