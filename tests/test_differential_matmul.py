"""Random matrix products, forward and backward, on every device against PyTorch: operands
transposed, sliced with a step, flipped, broadcast over a batch, or windows of one stored
tensor; sizes around the GEMM's tile and block edges (1, 15-17, 33, 65, 129 and a K past
the split-K threshold); sometimes a bias and ReLU or a scale after. On the cpu device
these are claimed by luban's GEMM through the pattern recognizer (patterns.py), whose
paths (A packed, or read in place as consecutive or equally spaced rows; B read in place,
packed per panel or packed whole; a batch's far-apart B rows copied; K split over the
threads; one-row products; epilogues on finished blocks) each depend on the layout and
the sizes drawn here."""
import numpy as np
import pytest

import luban

torch = pytest.importorskip("torch")

SIZES = (1, 2, 15, 16, 17, 33, 65, 129)
CASES = 40


def _operand(x, kind: str):
    """The (batch..., rows, cols) operand as a view of its stored tensor x (see _storage)."""
    if kind == "t":  # stored (batch, cols, rows)
        return x.transpose(-1, -2)
    if kind == "step":  # stored with twice the rows, every other one used
        return x[..., ::2, :]
    if kind == "flip":
        return x.flip((-1,))
    return x


def _storage(rng, rows: int, cols: int, batch: tuple):
    """(stored array, how the operand views it) for a (batch..., rows, cols) operand."""
    kind = str(rng.choice(["plain", "t", "step", "flip"]))
    shape = {"t": batch + (cols, rows), "step": batch + (2 * rows, cols)}.get(kind, batch + (rows, cols))
    return rng.standard_normal(shape).astype(np.float32) / np.sqrt(cols), kind


def _program(rng):
    m, n = int(rng.choice(SIZES)), int(rng.choice(SIZES))
    k = int(rng.choice(SIZES + (2100,))) if rng.random() < 0.9 else 2100  # 2100: K split over threads
    if k == 2100:
        m, n = min(m, 65), min(n, 65)
    nb = int(rng.integers(0, 3))
    batch = tuple(int(rng.choice([1, 2, 3])) for _ in range(nb))
    # a batch dim of size 1 in one operand broadcasts against the other's
    bb = tuple(1 if rng.random() < 0.3 else d for d in batch)
    return m, n, k, batch, bb


@pytest.mark.parametrize("seed", range(CASES))
def test_random_matmul_matches_torch(device, seed):
    rng = np.random.default_rng(70_000 + seed)
    m, n, k, batch, bb = _program(rng)
    a_store, b_store = _storage(rng, m, k, batch), _storage(rng, k, n, bb)
    epi = str(rng.choice(["none", "bias_relu", "scale", "residual"]))
    bias = rng.standard_normal(n).astype(np.float32)
    res = rng.standard_normal(batch + (m, n) if len(batch) >= len(bb) else bb + (m, n)).astype(np.float32)

    def run(lib, a_arr, b_arr):
        wrap = (lambda v: luban.tensor(v, requires_grad=True)) if lib is luban else \
            (lambda v: torch.from_numpy(v).double().requires_grad_())
        const = (lambda v: luban.tensor(v)) if lib is luban else (lambda v: torch.from_numpy(v).double())
        a_leaf, b_leaf = wrap(a_arr[0]), wrap(b_arr[0])
        a, b = _operand(a_leaf, a_arr[1]), _operand(b_leaf, b_arr[1])
        c = a @ b
        if epi == "bias_relu":
            c = (c + const(bias)).relu()
        elif epi == "scale":
            c = c * 0.5
        elif epi == "residual":
            c = c + const(res)
        return c, a_leaf, b_leaf

    tc, ta, tb = run(torch, a_store, b_store)
    w = np.random.default_rng(seed).standard_normal(tuple(tc.shape))
    (tc * torch.from_numpy(w)).sum().backward()
    lc, la, lb = run(luban, a_store, b_store)
    assert tuple(lc.shape) == tuple(tc.shape)
    (lc * luban.tensor(w.astype(np.float32))).sum().backward()

    msg = f"seed {seed}: m={m} n={n} k={k} batch={batch}/{bb} a={a_store[1]} b={b_store[1]} epilogue={epi}"
    tol = dict(rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(lc.numpy(), tc.detach().numpy(), err_msg=msg, **tol)
    np.testing.assert_allclose(la.grad.numpy(), ta.grad.numpy(), err_msg=msg + " (A grad)", **tol)
    np.testing.assert_allclose(lb.grad.numpy(), tb.grad.numpy(), err_msg=msg + " (B grad)", **tol)
