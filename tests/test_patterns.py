"""Pattern claims: codegen/patterns.py recognizes GEMM-shaped kernels exactly, the cpu
device runs them through BLAS, and both that path and the generated one (claims off)
agree with NumPy. Near-misses must not be claimed and must still compute correctly."""
import numpy as np
import pytest

import luban
from luban.codegen.patterns import Contraction, Gemm, Padded, recognize
from luban.runtime import get_device
from luban.schedule.fusion import create_schedule
from luban.schedule.run import realize

pytestmark = pytest.mark.xdist_group("patterns")


def kernels_of(t):
    return [it.kernel for it in create_schedule([t.lazydata]) if it.kernel is not None]


def rand(rng, *shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


@pytest.fixture(params=["claims", "no_claims"])
def claims(request, monkeypatch):
    """Run the test with pattern claims on and off; yields the cpu device's claim counter."""
    if request.param == "no_claims":
        monkeypatch.setenv("LUBAN_NO_CLAIMS", "1")
    else:
        monkeypatch.delenv("LUBAN_NO_CLAIMS", raising=False)
    dev = get_device("cpu")
    start = dev.claimed_launches
    yield request.param == "claims", lambda: dev.claimed_launches - start


T = lambda x: luban.tensor(x, device="cpu")  # noqa: E731

# name -> (numpy inputs from a rng, luban expression, numpy expression, claimed with claims on:
# sizes of claimed cases are above the cpu device's CLAIM_MIN_WORK)
CASES = {
    "2d": (lambda r: [rand(r, 33, 40), rand(r, 40, 30)], lambda a, b: a @ b, lambda a, b: a @ b, True),
    "batched": (lambda r: [rand(r, 3, 16, 32), rand(r, 3, 32, 24)], lambda a, b: a @ b, lambda a, b: a @ b, True),
    "broadcast_batch_b": (lambda r: [rand(r, 4, 16, 32), rand(r, 32, 24)], lambda a, b: a @ b, lambda a, b: a @ b, True),
    "broadcast_batch_a": (lambda r: [rand(r, 16, 32), rand(r, 4, 32, 24)], lambda a, b: a @ b, lambda a, b: a @ b, True),
    "broadcast_batch_4d": (lambda r: [rand(r, 2, 1, 8, 20), rand(r, 3, 20, 16)], lambda a, b: a @ b,
                           lambda a, b: a @ b, False),  # two batch dims that do not merge: generated
    "transposed_a": (lambda r: [rand(r, 40, 33), rand(r, 40, 30)], lambda a, b: a.T @ b, lambda a, b: a.T @ b, True),
    "transposed_both": (lambda r: [rand(r, 40, 33), rand(r, 30, 40)], lambda a, b: a.T @ b.T,
                        lambda a, b: a.T @ b.T, True),
    "permuted_batch": (lambda r: [rand(r, 16, 3, 32), rand(r, 3, 24, 32)],
                       lambda a, b: a.permute(1, 0, 2) @ b.permute(0, 2, 1),
                       lambda a, b: a.transpose(1, 0, 2) @ b.transpose(0, 2, 1), True),
    "sliced": (lambda r: [rand(r, 40, 50), rand(r, 40, 40)], lambda a, b: a[3:35, 2:42] @ b[:, 4:34],
               lambda a, b: a[3:35, 2:42] @ b[:, 4:34], True),
    "strided_slice": (lambda r: [rand(r, 64, 40), rand(r, 40, 96)], lambda a, b: a[::2] @ b[:, ::3],
                      lambda a, b: a[::2] @ b[:, ::3], True),
    "flipped": (lambda r: [rand(r, 33, 40), rand(r, 40, 30)], lambda a, b: a.flip(0) @ b.flip(1),
                lambda a, b: a[::-1] @ b[:, ::-1], True),
    "broadcast_row": (lambda r: [rand(r, 1, 20), rand(r, 20, 300)], lambda a, b: a.expand(16, 20) @ b,
                      lambda a, b: np.broadcast_to(a, (16, 20)) @ b, True),  # a zero stride: copied for BLAS
    "self_gram": (lambda r: [rand(r, 50, 30)], lambda a: a.T @ a, lambda a: a.T @ a, True),
    "row_vector": (lambda r: [rand(r, 1, 256), rand(r, 256, 160)], lambda a, b: a @ b, lambda a, b: a @ b, True),
    "matvec": (lambda r: [rand(r, 160, 256), rand(r, 256)], lambda a, b: a @ b, lambda a, b: a @ b,
               False),  # the matrix read along k: a generated reduce, no packing
    "matvec_transposed": (lambda r: [rand(r, 256, 160), rand(r, 256)], lambda a, b: a.T @ b,
                          lambda a, b: a.T @ b, True),  # the GEMM reads 16 rows of a.T at once in place
    "size1_k": (lambda r: [rand(r, 64, 1), rand(r, 1, 80)], lambda a, b: a @ b, lambda a, b: a @ b, None),
    "tiny": (lambda r: [rand(r, 2, 3), rand(r, 3, 4)], lambda a, b: a @ b, lambda a, b: a @ b, False),
    "batched_dot": (lambda r: [rand(r, 64, 1, 100), rand(r, 64, 100, 1)], lambda a, b: a @ b,
                    lambda a, b: a @ b, False),  # m = n = 1: left to generated code
    "float64": (lambda r: [rand(r, 33, 20, dtype=np.float64), rand(r, 3, 20, 17, dtype=np.float64)],
                lambda a, b: a @ b, lambda a, b: a @ b, True),
    # the rest of the kernel runs as a generated epilogue on the GEMM's result
    "epilogue": (lambda r: [rand(r, 32, 48), rand(r, 48, 24), rand(r, 24)], lambda a, b, c: (a @ b + c).relu() * 2,
                 lambda a, b, c: np.maximum(a @ b + c, 0) * 2, True),
    "epilogue_reduce": (lambda r: [rand(r, 32, 48), rand(r, 48, 24)], lambda a, b: ((a @ b) * 0.25).exp().sum(1),
                        lambda a, b: np.exp((a @ b) * 0.25).sum(1), True),
    # attention's output: heads moved next to the features, written there by the GEMM itself
    "permuted_output": (lambda r: [rand(r, 4, 16, 32), rand(r, 4, 32, 24)],
                        lambda a, b: (a @ b).transpose(0, 1).reshape(16, 96),
                        lambda a, b: (a @ b).transpose(1, 0, 2).reshape(16, 96), True),
    # a reshape that splits a transposed output dim: still one strided write
    "split_transposed_output": (lambda r: [rand(r, 64, 40), rand(r, 40, 48)], lambda a, b: (a @ b).T.reshape(96, 32),
                                lambda a, b: (a @ b).T.reshape(96, 32), True),
    "einsum": (lambda r: [rand(r, 8, 5, 6), rand(r, 6, 5, 9)], lambda a, b: luban.einsum("ikj,jkl->il", a, b),
               lambda a, b: np.einsum("ikj,jkl->il", a, b), False),  # two contracted dims in a different order
}


@pytest.mark.parametrize("case", list(CASES))
def test_matmul_claims_on_and_off(case, claims):
    enabled, claimed = claims
    make, lb, ref, expect_claim = CASES[case]
    xs = make(np.random.default_rng(len(case)))
    out = lb(*[T(x) for x in xs]).numpy()
    want = ref(*xs)
    assert out.dtype == want.dtype and out.shape == want.shape
    tol = 1e-12 if want.dtype == np.float64 else 1e-5
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol * np.abs(want).max())
    if not enabled or expect_claim is False:
        assert claimed() == 0
    elif expect_claim:
        assert claimed() == 1


def test_recognized_gemm_describes_the_views():
    rng = np.random.default_rng(0)
    a, b = T(rand(rng, 6, 10)), T(rand(rng, 8, 12))
    (k,) = kernels_of(a.T @ b[1:7, 2:9])  # a read column-major, b a window from row 1, col 2
    g, rest = recognize(k)
    assert isinstance(g, Gemm) and rest is None, k.ast.pretty()
    assert (g.dtype, g.batch, g.m, g.n, g.k) == ("float32", 1, 10, 7, 6)
    assert k.inputs[g.a.index][1] == (6, 10) and k.inputs[g.b.index][1] == (8, 12)
    assert g.a.offset == 0 and g.a.strides[1:] == (1, 10)  # (row i, col k) of a.T is a[k, i]
    assert g.b.offset == 1 * 12 + 2 and g.b.strides[1:] == (12, 1)
    assert g.out_strides[1:] == (7, 1)


def test_permuted_output_is_written_in_place():
    rng = np.random.default_rng(0)
    a, b = T(rand(rng, 4, 16, 32)), T(rand(rng, 4, 32, 24))
    (k,) = kernels_of((a @ b).transpose(0, 1).reshape(16, 96))
    g, rest = recognize(k)
    assert rest is None, k.ast.pretty()  # no epilogue copying the result into place
    assert (g.batch, g.m, g.n, g.k) == (4, 16, 24, 32)
    assert g.out_strides == (24, 96, 1)  # head h at column 24 h of row i
    (k,) = kernels_of((T(rand(rng, 64, 40)) @ T(rand(rng, 40, 48))).T.reshape(96, 32))
    g, rest = recognize(k)
    assert rest is None and g.out_strides[1:] == (1, 64)  # C[i, j] at flat j * 64 + i
    (k,) = kernels_of((T(rand(rng, 64, 40)) @ T(rand(rng, 40, 48))).flip(0))
    g, rest = recognize(k)
    assert rest is not None and g.out_strides[1:] == (48, 1)  # a flip is not followed: row-major, then copied


def test_epilogue_is_the_rest_of_the_kernel():
    rng = np.random.default_rng(0)
    a, b = T(rand(rng, 10, 6)), T(rand(rng, 6, 12))
    (k,) = kernels_of((a @ b).relu())
    g, rest = recognize(k)
    assert (g.batch, g.m, g.n, g.k, g.out_strides[1:]) == (1, 10, 12, 6, (12, 1))
    assert rest.inputs == k.inputs + ((luban.float32, (10, 12, 1)),)
    ops = [n.op.name for n in rest.ast.toposort()]
    assert "SUM" not in ops and "MUL" not in ops and ops.count("LOAD") == 1


NEAR_MISSES = {
    # a max-reduce of products is no GEMM
    "max_reduce": (lambda a, b: (a.unsqueeze(-1) * b.unsqueeze(0)).amax(1),
                   lambda a, b: (a[:, :, None] * b[None]).max(1), (32, 20), (20, 24)),
    # a reshape that splits a transposed view leaves // and % in the address
    "reshape_of_transpose": (lambda a, b: a.T.reshape(32, 20) @ b, lambda a, b: a.T.reshape(32, 20) @ b,
                             (40, 16), (20, 24)),
    # summed over a dim only one operand has: (sum of a) * b
    "one_sided_sum": (lambda a, b: (a.unsqueeze(-1) * b[:1].unsqueeze(0)).sum(1),
                      lambda a, b: a.sum(1)[:, None] * b[:1], (32, 20), (20, 24)),
}


@pytest.mark.parametrize("case", list(NEAR_MISSES))
def test_near_misses_are_not_claimed(case, claims):
    _, claimed = claims
    lb, ref, sa, sb = NEAR_MISSES[case]
    rng = np.random.default_rng(1)
    a, b = rand(rng, *sa), rand(rng, *sb)
    out = lb(T(a), T(b))
    assert all(recognize(k) is None for k in kernels_of(out))
    np.testing.assert_allclose(out.numpy(), ref(a, b), rtol=1e-5, atol=1e-4)
    assert claimed() == 0


def test_gather_operand_is_not_claimed(claims):
    _, claimed = claims
    rng = np.random.default_rng(2)
    a, b, idx = rand(rng, 30, 20), rand(rng, 20, 24), rng.integers(0, 30, 16)
    out = T(a)[T(idx)] @ T(b)
    ks = kernels_of(out)
    assert all(recognize(k) is None for k in ks if any(n.op.name == "GATHER" for n in k.ast.toposort()))
    np.testing.assert_allclose(out.numpy(), a[idx] @ b, rtol=1e-5, atol=1e-5)


def test_int_matmul_is_not_claimed(claims):
    _, claimed = claims
    rng = np.random.default_rng(3)
    a, b = rng.integers(-5, 5, (32, 20)), rng.integers(-5, 5, (20, 24))
    out = T(a) @ T(b)
    assert all(recognize(k) is None for k in kernels_of(out))
    np.testing.assert_array_equal(out.numpy(), a @ b)
    assert claimed() == 0


def test_linear_backward_matmuls_are_claimed(claims):
    """A Linear layer's forward (fused into the backward's relu mask: claimed with that as
    its epilogue) and its weight and input gradients (plain GEMMs) all run in BLAS."""
    enabled, claimed = claims
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x, w, bias = rand(rng, 64, 48), rand(rng, 32, 48), rand(rng, 32)
    lx = T(x).requires_grad_()
    layer = luban.nn.Linear(48, 32)
    layer.weight = luban.nn.Parameter(T(w))
    layer.bias = luban.nn.Parameter(T(bias))
    (layer(lx).relu() ** 2).sum().backward()
    lx.grad.realize()
    layer.weight.grad.realize()
    # forward x @ w.T, grad_x = g @ w, grad_w = g.T @ x
    assert claimed() == (3 if enabled else 0), claimed()
    tx = torch.tensor(x, requires_grad=True)
    tl = torch.nn.Linear(48, 32)
    with torch.no_grad():
        tl.weight.copy_(torch.tensor(w))
        tl.bias.copy_(torch.tensor(bias))
    (tl(tx).relu() ** 2).sum().backward()
    for got, want in ((lx.grad, tx.grad), (layer.weight.grad, tl.weight.grad), (layer.bias.grad, tl.bias.grad)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-3)


def test_padded_operand_is_a_contraction_over_a_padded_copy(claims):
    """A PAD'ed operand reads through a guard: no Gemm, but a Contraction whose operand
    addresses a zero-padded copy (the cpu device declines this one: short reduce)."""
    _, claimed = claims
    rng = np.random.default_rng(5)
    a, b = rand(rng, 32, 18), rand(rng, 20, 24)
    out = T(a).pad((1, 1)) @ T(b)
    (k,) = kernels_of(out)
    g, rest = recognize(k)
    assert isinstance(g, Contraction) and rest is None
    assert g.a.padded == Padded(g.a.index, 0, (32, 18), (18, 1), ((0, 0), (1, 1)))
    assert g.b.padded is None and g.sizes == (32, 24, 20) and g.roles == "mnk"
    np.testing.assert_allclose(out.numpy(), np.pad(a, ((0, 0), (1, 1))) @ b, rtol=1e-5, atol=1e-4)
    assert claimed() == 0


def test_conv_of_computed_input_reads_it_stored_padded():
    """A convolution over computed data (relu(2x)) stores that input padded, once, and its
    windows read the padded buffer in place: a Contraction with no per-launch padded copy."""
    rng = np.random.default_rng(6)
    x, w = rand(rng, 2, 3, 8, 8), rand(rng, 4, 3, 3, 3)
    out = luban.nn.functional.conv2d((T(x) * 2).relu(), T(w), padding=1)
    items = [it for it in create_schedule([out.lazydata]) if it.kernel is not None]
    assert [tuple(it.out.shape) for it in items][0] == (2, 3, 10, 10)  # the padded input
    g, rest = recognize(items[-1].kernel)
    assert isinstance(g, Contraction) and rest is None
    assert g.a.padded is None and g.b.padded is None
    xp = np.pad(np.maximum(2 * x, 0), ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # (2, 3, 8, 8, 3, 3)
    want = np.einsum("nchwij,ocij->nohw", win, w)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-4, atol=1e-4)


def test_precompile_builds_a_claimed_kernels_epilogue_not_the_kernel(monkeypatch):
    """A schedule's new kernels compile in one parallel batch; a kernel the cpu device
    claims (a GEMM with an elementwise rest) puts its epilogue and that epilogue over
    blocks in the batch, never its own generated code."""
    monkeypatch.delenv("LUBAN_NO_CLAIMS", raising=False)
    dev = get_device("cpu")
    rng = np.random.default_rng(7)
    a, b, c = (T(rand(rng, *s)) for s in ((72, 40), (40, 56), (56,)))
    out = [(a @ b + c).relu() * 3, (a * 2).sum(0)]
    compiled, batch = [], dev.compile_many
    monkeypatch.setattr(dev, "compile_many", lambda items: compiled.extend(n for _, n in items) or batch(items))
    start = dev.claimed_launches
    realize([t.lazydata for t in out])
    assert dev.claimed_launches - start == 1
    gemm = [n for n in compiled if n.startswith("reduce_72x56")]
    assert len(gemm) == 2 and all("_epilogue" in n for n in gemm), compiled
    assert any(n.startswith("reduce_72x56_epilogue_block") for n in gemm)
    ref = a.numpy() @ b.numpy() + c.numpy()
    np.testing.assert_allclose(out[0].numpy(), np.maximum(ref, 0) * 3, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[1].numpy(), (a.numpy() * 2).sum(0), rtol=1e-5, atol=1e-5)
