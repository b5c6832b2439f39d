"""Random chains of views (permute, flip, pad, strided slices, reshapes, broadcasts) under
elementwise work and reductions over several axes, forward and backward, on every device
against PyTorch. A view only rewrites the index a kernel reads, and every rewrite meets
every other one somewhere: the index algebra (codegen/symbolic.py), the fusion cuts under
broadcasts and the backward rules of the movement ops are swept here on odd shapes,
which fixed tests do not do."""
import numpy as np
import pytest

import luban

torch = pytest.importorskip("torch")

DIMS = (1, 2, 3, 4, 5, 7, 8, 12, 16, 17)
CASES = 60


def _view(rng, x, lib):
    """One random view of x (a luban or torch tensor): the same op on either."""
    shape = tuple(x.shape)
    nd = len(shape)
    op = str(rng.choice(["permute", "flip", "pad", "slice", "reshape", "expand", "transpose"]))
    if op == "permute" and nd > 1:
        return x.permute(*[int(d) for d in rng.permutation(nd)])
    if op == "transpose" and nd > 1:
        a, b = (int(d) for d in rng.choice(nd, 2, replace=False))
        return x.transpose(a, b)
    if op == "flip":
        return x.flip(tuple(int(d) for d in rng.choice(nd, int(rng.integers(1, nd + 1)), replace=False)))
    if op == "pad":
        pads = [int(p) for p in rng.integers(0, 3, size=2 * min(nd, 2))]
        if lib is luban:
            return luban.nn.functional.pad(x, pads)
        return torch.nn.functional.pad(x, pads)
    if op == "slice":
        d = int(rng.integers(nd))
        n = shape[d]
        start, step = int(rng.integers(0, max(n // 2, 1))), int(rng.choice([1, 2, 3]))
        idx = [slice(None)] * nd
        idx[d] = slice(start, None, step)
        return x[tuple(idx)]
    if op == "reshape":
        # merge two adjacent dims, or split one by a factor (a reshape of a non-contiguous view)
        if nd > 1 and rng.random() < 0.5:
            d = int(rng.integers(nd - 1))
            return x.reshape(*shape[:d], shape[d] * shape[d + 1], *shape[d + 2:])
        d = int(rng.integers(nd))
        f = next((f for f in (2, 3, 4) if shape[d] % f == 0 and shape[d] > f), None)
        if f is not None:
            return x.reshape(*shape[:d], f, shape[d] // f, *shape[d + 1:])
        return x.reshape(*shape, 1)
    if op == "expand":
        d = int(rng.integers(nd + 1))
        y = x.unsqueeze(d)
        return y.expand(*shape[:d], int(rng.choice([2, 3])), *shape[d:])
    return x


def _views(rng, x, lib):
    """One to four random views of x, one after the other."""
    for _ in range(int(rng.integers(1, 5))):
        x = _view(rng, x, lib)
    return x


def _chain(seed, lib, x, y):
    """The same random program on (x, y): views of x, elementwise with y, sometimes a
    reduction over several axes, then a view of the result."""
    rng = np.random.default_rng(seed)
    h = _views(rng, x, lib)
    h = h * 1.5 + (h.abs() if rng.random() < 0.5 else h.sigmoid())
    # y broadcast against h: its shape is h's with some dims 1 (drawn in the test)
    h = h - y if rng.random() < 0.5 else h * y
    if h.ndim and rng.random() < 0.7:
        axes = tuple(int(d) for d in rng.choice(h.ndim, int(rng.integers(1, h.ndim + 1)), replace=False))
        keep = bool(rng.random() < 0.5)
        red = str(rng.choice(["sum", "amax", "mean"]))
        h = getattr(h, red)(axes, keepdim=keep)
    if h.ndim > 1 and rng.random() < 0.5:
        h = h.transpose(0, h.ndim - 1)
    return h


def _shapes(seed):
    rng = np.random.default_rng(seed)
    return tuple(int(d) for d in rng.choice(DIMS, size=int(rng.integers(1, 5))))


@pytest.mark.parametrize("seed", range(CASES))
def test_random_views_match_torch(device, seed):
    rng = np.random.default_rng(50_000 + seed)
    shape = _shapes(50_000 + seed)
    xv = rng.standard_normal(shape).astype(np.float32)
    xv[rng.random(shape) < 0.05] = 0.0
    # y's shape: h's before the reduction, some dims 1 (traced once in torch to learn it)
    with torch.no_grad():
        probe = _trace_shape(100_000 + seed, torch.from_numpy(xv))
    ys = tuple(d if rng.random() < 0.6 else 1 for d in probe)
    yv = rng.standard_normal(ys).astype(np.float32)

    tx, ty = torch.from_numpy(xv).double().requires_grad_(), torch.from_numpy(yv).double().requires_grad_()
    tout = _chain(100_000 + seed, torch, tx, ty)
    tw = torch.from_numpy(rng.standard_normal(tuple(tout.shape)))
    (tout * tw).sum().backward()

    lx, ly = luban.tensor(xv, requires_grad=True), luban.tensor(yv, requires_grad=True)
    lout = _chain(100_000 + seed, luban, lx, ly)
    assert tuple(lout.shape) == tuple(tout.shape)
    (lout * luban.tensor(tw.numpy().astype(np.float32))).sum().backward()

    msg = f"seed {seed}: x {shape}, y {ys}"
    np.testing.assert_allclose(lout.numpy(), tout.detach().numpy(), rtol=1e-4, atol=1e-4, err_msg=msg)
    np.testing.assert_allclose(lx.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-4, err_msg=msg + " (x grad)")
    np.testing.assert_allclose(ly.grad.numpy(), ty.grad.numpy(), rtol=1e-4, atol=1e-4, err_msg=msg + " (y grad)")


def _trace_shape(seed, x):
    """The shape of h where y joins it (the chain's views only), by running them."""
    return tuple(_views(np.random.default_rng(seed), x, torch).shape)
