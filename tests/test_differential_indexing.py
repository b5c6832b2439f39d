"""Random indexing, forward and backward, on every device against PyTorch: basic indices
(ints, stepped and out-of-range slices, None), integer-array and boolean-mask indices,
gather, take_along_dim, index_select, masked_fill, scatter_add, and assignment into a
slice from the tensor's own values (the hunt that found in-place ops after a use sending
gradients the wrong way). Indices are drawn in range; PyTorch is the reference for values,
shapes and gradients."""
import numpy as np
import pytest

import luban

torch = pytest.importorskip("torch")

CASES = 60
KINDS = ("basic", "array", "mask", "gather", "take_along_dim", "index_select", "masked_fill", "scatter_add",
         "setitem")


def _index(lib, v):
    """A NumPy index array as the library's tensor."""
    return torch.from_numpy(v) if lib is torch else luban.tensor(v)


def _program(rng, shape):
    """(description, f(tensor, lib) -> tensor) for one random indexing op on `shape`."""
    nd = len(shape)
    kind = KINDS[int(rng.integers(len(KINDS)))]
    d = int(rng.integers(nd))
    if kind == "basic":
        key = []
        for n in shape:
            r = rng.random()
            if r < 0.3:
                key.append(int(rng.integers(-n, n)))
            elif r < 0.8:
                lo, hi = sorted(int(v) for v in rng.integers(-n - 1, n + 2, 2))
                key.append(slice(lo, hi, int(rng.choice([1, 2, 3]))))
            else:
                key.append(slice(None))
        if rng.random() < 0.3:
            key.insert(int(rng.integers(len(key) + 1)), None)
        key = tuple(key)
        return f"x[{key}]", lambda x, lib: x[key]
    if kind == "array":
        ind = rng.integers(-shape[d], shape[d], int(rng.integers(1, 6)))
        return f"dim {d} x[..., {ind}]", lambda x, lib: x[(slice(None),) * d + (_index(lib, ind),)]
    if kind == "mask":
        mask = rng.random(shape) < 0.5
        return "x[mask]", lambda x, lib: x[_index(lib, mask)]
    if kind == "masked_fill":
        mask = rng.random(shape) < 0.5
        return "masked_fill", lambda x, lib: x.masked_fill(_index(lib, mask), 2.5)
    if kind == "index_select":
        ind = rng.integers(0, shape[d], int(rng.integers(1, 6)))
        return f"index_select({d}, {ind})", lambda x, lib: x.index_select(d, _index(lib, ind))
    if kind in ("gather", "take_along_dim", "scatter_add"):
        ishape = list(shape)
        ishape[d] = int(rng.integers(1, 5))
        ind = rng.integers(0, shape[d], ishape)
        if kind == "gather":
            return f"gather({d})", lambda x, lib: x.gather(d, _index(lib, ind))
        if kind == "take_along_dim":
            return f"take_along_dim({d})", lambda x, lib: (torch.take_along_dim(x, _index(lib, ind), d) if lib is torch
                                                           else x.take_along_dim(_index(lib, ind), d))
        src = rng.standard_normal(ishape).astype(np.float32)
        return f"scatter_add({d})", lambda x, lib: x.scatter_add(d, _index(lib, ind), _index(lib, src))
    start = int(rng.integers(shape[d]))
    key = (slice(None),) * d + (slice(start, None, 2),)

    def assign(x, lib):
        y = x * 1.0
        y[key] = y[key] * 3.0 + 1.0  # the new value reads the old one
        return y
    return f"y[{key}] = y[{key}] * 3 + 1", assign


@pytest.mark.parametrize("seed", range(CASES))
def test_random_indexing_matches_torch(device, seed):
    rng = np.random.default_rng(30_000 + seed)
    shape = tuple(int(n) for n in rng.choice([1, 2, 3, 5, 8], size=int(rng.integers(1, 4))))
    x = rng.standard_normal(shape).astype(np.float32)
    what, f = _program(rng, shape)
    tx, lx = torch.from_numpy(x).requires_grad_(), luban.tensor(x, requires_grad=True)
    want, got = f(tx, torch), f(lx, luban)
    msg = f"seed {seed}: {what} on {shape}"
    assert tuple(got.shape) == tuple(want.shape), msg
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-6, atol=1e-6, err_msg=msg)
    g = rng.standard_normal(tuple(want.shape)).astype(np.float32)
    (want * torch.from_numpy(g)).sum().backward()
    (got * luban.tensor(g)).sum().backward()
    np.testing.assert_allclose(lx.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-5, err_msg=msg + " (grad)")
