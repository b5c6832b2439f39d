"""Indexing, gather/scatter and joining, against PyTorch: values, dtypes and gradients
(the backward of a random-weighted sum), on every device (the `device` fixture)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import luban
from luban.graph.ops import Op


def _np(t) -> np.ndarray:
    return t.detach().numpy() if isinstance(t, torch.Tensor) else t.numpy()


def _close(got, want, what="value"):
    g, w = _np(got), _np(want)
    assert g.shape == w.shape, f"{what}: shape {g.shape} != torch's {w.shape}"
    assert g.dtype == w.dtype, f"{what}: dtype {g.dtype} != torch's {w.dtype}"
    np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12, err_msg=what)


def _check(fn_l, fn_t, *arrays, seed=0):
    """fn_l(*luban tensors) and fn_t(*torch tensors) agree, and so do the gradients of a
    random-weighted sum of the output with respect to every float input."""
    lx = [luban.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    tx = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    yl, yt = fn_l(*lx), fn_t(*tx)
    _close(yl, yt)
    if not yt.requires_grad:
        return
    w = np.random.default_rng(seed).standard_normal(tuple(yt.shape))
    (yl * luban.tensor(w)).sum().backward()
    (yt * torch.tensor(w)).sum().backward()
    for k, (a, b) in enumerate(zip(lx, tx)):
        if b.grad is not None:
            _close(a.grad, b.grad, what=f"grad of input {k}")
        elif a.grad is not None:
            assert not a.grad.numpy().any(), f"input {k}: torch has no gradient, luban's is not zero"


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _lazy(a) -> luban.Tensor:
    """An unrealized integer tensor (x * 1 would fold back to the realized buffer)."""
    t = -luban.tensor(-np.asarray(a))
    assert not t.lazydata.realized
    return t


def _ops(t: luban.Tensor) -> list:
    return [n.op for n in t.lazydata.toposort()]


# ---- getitem ------------------------------------------------------------------------------------
M = np.array([[True, False, True, True, False], [False, False, True, False, True],
              [True, True, False, False, False], [False, True, True, True, True]])
KEYS = [
    2, -1, (1, -2), (slice(None), 3), (Ellipsis, 0), (slice(1, 3), slice(None), slice(0, 5, 2)),
    (slice(None, None, 3), slice(1, None, 2), slice(5, 1)), (None, 1, None, Ellipsis), (Ellipsis, None),
    True, (False, 0), ([2, 0, 2],), ([[1, -1], [0, 2]],), ([1, 0], [4, -5]), ([1, 0], slice(None), [2, 3]),
    (slice(None), [0, 4], [5, 1]), (0, slice(None, None, 2), [1, 3]), ([0, 3], None, [1, 2]),
    ([[0], [3]], slice(1, 4), [[1, 2, 5]]), (np.array([3, 1]), 2), ([[]],), (M,), (slice(1, 3), M[0]),
    (M[:, :1].reshape(4), slice(None), [0, -1]), ([0, 1], True, Ellipsis),
]
VIEWS = {  # (base shape, make a (4, 5, 6) view of it) for luban and torch alike
    "contiguous": ((4, 5, 6), lambda t: t),
    "permuted": ((6, 4, 5), lambda t: t.permute(1, 2, 0)),
    "sliced": ((6, 5, 13), lambda t: t[1:5, :, 1::2]),
    "expanded": ((4, 1, 6), lambda t: t.expand(4, 5, 6)),
}


def _torch_key(key):
    key = key if isinstance(key, tuple) else (key,)
    return tuple(torch.from_numpy(_int_if_empty(np.asarray(k))) if isinstance(k, (list, np.ndarray)) else k
                 for k in key)


def _int_if_empty(a: np.ndarray) -> np.ndarray:
    return a.astype(np.int64) if a.size == 0 else a


@pytest.mark.parametrize("key", KEYS, ids=[f"key{i}" for i in range(len(KEYS))])
def test_getitem_matches_torch(device, key):
    base, view = VIEWS["contiguous"]
    _check(lambda x: view(x)[key], lambda x: view(x)[_torch_key(key)], _rand(*base))


@pytest.mark.parametrize("kind", ["permuted", "sliced", "expanded"])
@pytest.mark.parametrize("key", [KEYS[5], KEYS[6], KEYS[13], KEYS[14], KEYS[18], KEYS[21]],
                         ids=["slices", "steps", "pair", "separated", "broadcast", "mask"])
def test_getitem_of_views(device, kind, key):
    base, view = VIEWS[kind]
    _check(lambda x: view(x)[key], lambda x: view(x)[_torch_key(key)], _rand(*base))


def test_getitem_with_tensor_indices(device):
    a = _rand(5, 6)
    i, j = np.array([[0, -1], [4, -5]]), np.array([1, -6])
    _check(lambda x: x[luban.tensor(i), luban.tensor(j)], lambda x: x[torch.tensor(i), torch.tensor(j)], a)
    _check(lambda x: x[_lazy(i), _lazy(j)], lambda x: x[torch.tensor(i), torch.tensor(j)], a)
    _check(lambda x: x[:, _lazy(j)], lambda x: x[:, torch.tensor(j)], a)
    _check(lambda x: x[luban.tensor([1]).reshape(()), :, None], lambda x: x[torch.tensor(1), :, None], a)
    _check(lambda x: x[luban.tensor(M[0])], lambda x: x[torch.tensor(M[0])], a)
    _check(lambda x: x[_lazy(M[0].astype(np.int64)).bool(), 2:], lambda x: x[torch.tensor(M[0]), 2:], a)


def test_embedding_lookup_is_one_gather(device):
    table = _rand(10, 8)
    idx = np.array([[1, 9, 3], [0, 0, -1]])
    out = luban.tensor(table)[luban.tensor(idx)]
    ops = _ops(out)
    assert ops.count(Op.GATHER) == 1 and Op.SUM not in ops, ops
    np.testing.assert_array_equal(out.numpy(), table[idx])
    _check(lambda t: t[luban.tensor(idx)], lambda t: t[torch.tensor(idx)], table)


def test_getitem_errors(device):
    x = luban.zeros(3, 4)
    with pytest.raises(IndexError, match="index 3 is out of bounds for dimension 0 with size 3"):
        x[3]
    with pytest.raises(IndexError, match="index -5 is out of bounds for dimension 1 with size 4"):
        x[0, -5]
    with pytest.raises(IndexError, match="index 4 is out of bounds for dimension 1 with size 4"):
        x[:, luban.tensor([0, 4])]
    with pytest.raises(IndexError, match="dimension 0 with size 3"):
        x[[-4]]
    with pytest.raises(IndexError, match="too many indices"):
        x[0, 0, 0]
    with pytest.raises(IndexError, match="does not match the shape"):
        x[luban.ones(4, dtype=luban.bool)]
    with pytest.raises(IndexError, match="could not be broadcast"):
        x[[0, 1], [0, 1, 2]]
    with pytest.raises(IndexError, match="must be long, int, byte or bool"):
        x[luban.tensor([0.0])]
    with pytest.raises(ValueError, match="step must be greater than zero"):
        x[::-1]


@pytest.mark.parametrize("index", [[0, 4], [-5, 0], [[1], [7]]], ids=["high", "low", "2d"])
def test_lazy_out_of_range_index_raises_when_run(device, index):
    x = luban.arange(12.0).reshape(3, 4)
    with pytest.raises(IndexError):
        x[:, _lazy(index)].numpy()
    with pytest.raises(IndexError):  # merged with dim 0, position 0*4+4 would be in range
        x[_lazy([0]), _lazy(index)].numpy()
    y = x * 1
    y[:, _lazy(index)] = 0.0
    with pytest.raises(IndexError):
        y.numpy()


# ---- setitem ------------------------------------------------------------------------------------
SET_KEYS = [
    (1, None), ((slice(None), 2), None), ((slice(0, 3, 2), slice(1, None, 3)), None), ((Ellipsis, -1), None),
    ((None, 2, slice(1, 4)), (6,)), (([0, 2, -1],), (1, 6)), (([1, 3], [0, 4]), (2, 1)),
    (([0, 2], slice(None), [1, 4]), (1, 5)), ((slice(None), [4, 0]), (2, 1)), ((M,), None),
    ((M[:, 0],), (6,)), ((M.any(1), 1), None), ((slice(1, None), M[0]), (1, 3, 6)),
]


@pytest.mark.parametrize("key,vshape", SET_KEYS, ids=[f"key{i}" for i in range(len(SET_KEYS))])
def test_setitem_matches_torch(device, key, vshape):
    def run(lib, x, v=2.5):
        y = x * 1  # a non-leaf, so gradients reach x through the write
        y[key if lib is luban else _torch_key(key)] = v
        return y
    arrays = [_rand(4, 5, 6)] + ([] if vshape is None else [_rand(*vshape, seed=1)])
    _check(lambda *a: run(luban, *a), lambda *a: run(torch, *a), *arrays)


def test_setitem_gradient_reaches_value_in_a_leaf_without_grad(device):
    def run(lib, v):
        y = lib.zeros(3, 4, dtype=lib.float64)
        y[1:, ::2] = v
        y[0, [3, 1]] = v[0]
        return y
    _check(lambda v: run(luban, v), lambda v: run(torch, v), _rand(2, 2))


def test_setitem_casts_and_checks(device):
    x = luban.zeros(2, 3, dtype=luban.int32)
    x[0] = luban.tensor([1.7, -2.7, 3.0])
    x[1, 1:] = 9
    x[0, 0] = luban.ones(1, 1, dtype=luban.int64)  # leading size-1 dims may be dropped
    assert x.dtype is luban.int32
    np.testing.assert_array_equal(x.numpy(), [[1, -2, 3], [0, 9, 9]])
    b = luban.zeros(4, dtype=luban.bool)
    b[[1, 3]] = True
    np.testing.assert_array_equal(b.numpy(), [False, True, False, True])
    with pytest.raises(RuntimeError, match="cannot be broadcast"):
        x[0] = luban.ones(2)
    with pytest.raises(IndexError, match="out of bounds"):
        x[2] = 0
    with pytest.raises(RuntimeError, match="leaf"):
        luban.zeros(3, requires_grad=True)[0] = 1.0
    with luban.no_grad():
        w = luban.zeros(3, requires_grad=True)
        w[0] = 1.0
    np.testing.assert_array_equal(w.numpy(), [1, 0, 0])


def test_setitem_duplicate_indices_agreeing(device):
    x = luban.zeros(5)
    x[[1, 1, 3, 1]] = luban.tensor([2.0, 2.0, 7.0, 2.0])
    np.testing.assert_array_equal(x.numpy(), [0, 2, 0, 7, 0])


def test_setitem_mask_with_scalar_stays_lazy(device):
    x = luban.tensor(_rand(3, 4))
    lazy_mask = x < 0  # x[mask] = 0 needs no host read of the mask
    x[lazy_mask] = 0.0
    assert not lazy_mask.lazydata.realized
    np.testing.assert_array_equal(x.numpy(), np.maximum(_rand(3, 4), 0))


# ---- gather / scatter ---------------------------------------------------------------------------
def test_gather(device):
    x, idx = _rand(3, 5), np.array([[0, 4, 4], [1, 0, 2]])
    _check(lambda x: x.gather(1, luban.tensor(idx)), lambda x: x.gather(1, torch.tensor(idx)), x)
    _check(lambda x: luban.gather(x, 0, luban.tensor(idx[:, :2] % 3)),
           lambda x: torch.gather(x, 0, torch.tensor(idx[:, :2] % 3)), x)
    _check(lambda x: x.permute(1, 0).gather(-1, luban.tensor(idx.T % 3)),
           lambda x: x.permute(1, 0).gather(-1, torch.tensor(idx.T % 3)), x)


def test_scatter_add_with_repeated_indices(device):
    x, src = _rand(3, 4), _rand(2, 4, seed=1)
    idx = np.array([[0, 0, 2, 0], [2, 1, 2, 2]])
    _check(lambda x, s: x.scatter_add(0, luban.tensor(idx), s), lambda x, s: x.scatter_add(0, torch.tensor(idx), s),
           x, src)
    idx1 = np.array([[3, 3], [0, 3]])  # smaller than x and src off the scatter dim
    _check(lambda x, s: luban.scatter_add(x, 1, luban.tensor(idx1), s[:, :2]),
           lambda x, s: torch.scatter_add(x, 1, torch.tensor(idx1), s[:, :2]), x, src)
    big = _rand(3, 5, seed=2)  # torch's backward rejects a src larger than index: forward only
    _close(luban.scatter_add(luban.tensor(x), 1, luban.tensor(idx1), luban.tensor(big)),
           torch.scatter_add(torch.tensor(x), 1, torch.tensor(idx1), torch.tensor(big)))


def test_scatter(device):
    x, src = _rand(3, 4), _rand(2, 4, seed=1)
    idx = np.array([[0, 1, 2, 0], [2, 0, 1, 1]])
    _check(lambda x, s: x.scatter(0, luban.tensor(idx), s), lambda x, s: x.scatter(0, torch.tensor(idx), s), x, src)
    _check(lambda x: x.scatter(1, luban.tensor(idx[:, :2]), -1.5),
           lambda x: x.scatter(1, torch.tensor(idx[:, :2]), -1.5), x)


def test_index_select_and_take_along_dim(device):
    x = _rand(4, 3)
    for i in ([2, 0, 2], 1):
        _check(lambda x: x.index_select(0, luban.tensor(i)), lambda x: x.index_select(0, torch.tensor(i)), x)
    _check(lambda x: luban.index_select(x, 1, _lazy([2, 2])),
           lambda x: torch.index_select(x, 1, torch.tensor([2, 2])), x)
    idx = np.array([[0], [2], [1], [1]])
    _check(lambda x: x.take_along_dim(luban.tensor(idx), 1), lambda x: x.take_along_dim(torch.tensor(idx), 1), x)
    _check(lambda x: luban.take_along_dim(x, luban.tensor([[2, 0, 1]]), 0),
           lambda x: torch.take_along_dim(x, torch.tensor([[2, 0, 1]]), 0), x)
    _check(lambda x: luban.take_along_dim(x[:, None], luban.tensor([[[1, 0]], [[2, 2]]]), 2),
           lambda x: torch.take_along_dim(x[:, None], torch.tensor([[[1, 0]], [[2, 2]]]), 2), x[:2])
    _check(lambda x: luban.take_along_dim(x, luban.tensor([11, 0])),
           lambda x: torch.take_along_dim(x, torch.tensor([11, 0])), x)


def test_dimwise_index_errors(device):
    x = luban.zeros(3, 4)
    with pytest.raises(IndexError, match="index 3 is out of bounds for dimension 0 with size 3"):
        x.gather(0, luban.tensor([[3]]))
    with pytest.raises(IndexError, match="index -1 is out of bounds"):
        x.index_select(1, luban.tensor([-1]))
    with pytest.raises(IndexError):
        x.scatter_add(1, _lazy([[4]]), luban.ones(1, 1)).numpy()
    with pytest.raises(IndexError):
        x.gather(1, _lazy([[0, 9]])).numpy()
    with pytest.raises(RuntimeError, match="as many dimensions"):
        x.gather(0, luban.tensor([0]))
    with pytest.raises(RuntimeError, match="larger than the input"):
        x.gather(0, luban.zeros(1, 5, dtype=luban.int64))


def test_masked_fill(device):
    x, m = _rand(3, 4), np.array([True, False, False, True])
    _check(lambda x: x.masked_fill(luban.tensor(m), -2.0), lambda x: x.masked_fill(torch.tensor(m), -2.0), x)
    _check(lambda x, v: luban.masked_fill(x, luban.tensor(m[:3, None]), v.reshape(())),
           lambda x, v: torch.masked_fill(x, torch.tensor(m[:3, None]), v.reshape(())), x, np.array([0.5]))
    i = luban.arange(4).masked_fill(luban.tensor(m), 2.9)
    assert i.dtype is luban.int64 and i.tolist() == [2, 1, 2, 2]
    with pytest.raises(RuntimeError, match="boolean"):
        luban.zeros(3).masked_fill(luban.tensor([1, 0, 1]), 1.0)
    with pytest.raises(RuntimeError, match="0-dimensional"):
        luban.zeros(3).masked_fill(luban.tensor([True, False, True]), luban.ones(1))


def test_one_hot(device):
    c = np.array([[2, 0], [1, 4]])
    _check(lambda c: luban.one_hot(c), lambda c: torch.nn.functional.one_hot(c), c)
    _check(lambda c: luban.one_hot(c, 6), lambda c: torch.nn.functional.one_hot(c, 6), c)
    with pytest.raises(RuntimeError, match="smaller than num_classes"):
        luban.one_hot(luban.tensor([3]), 3)
    with pytest.raises(RuntimeError, match="non-negative"):
        luban.one_hot(luban.tensor([-1]), 3)


def test_nonzero_and_masked_select(device):
    a = np.array([[0, 1.5, 0], [2, 0, -1]])
    _check(lambda x: x.nonzero(), lambda x: x.nonzero(), a)
    for got, want in zip(luban.tensor(a).nonzero(as_tuple=True), torch.tensor(a).nonzero(as_tuple=True)):
        _close(got, want)
    m = np.array([True, False, True])
    _check(lambda x: x.masked_select(luban.tensor(m)), lambda x: x.masked_select(torch.tensor(m)), a)
    _check(lambda x: luban.masked_select(x[0], luban.tensor(M[:2, :3])),
           lambda x: torch.masked_select(x[0], torch.tensor(M[:2, :3])), a)


# ---- cat / stack --------------------------------------------------------------------------------
def test_cat(device):
    parts = [_rand(2, n, seed=n) for n in (1, 3, 2, 1, 4, 2, 3)]
    _check(lambda *p: luban.cat(p, 1), lambda *p: torch.cat(p, 1), *parts)
    _check(lambda a, b: luban.cat([a, b.permute(1, 0)]), lambda a, b: torch.cat([a, b.permute(1, 0)]),
           _rand(2, 3), _rand(3, 4))
    _check(lambda a, e: luban.cat([a, e, a[:, :0]], -1), lambda a, e: torch.cat([a, e, a[:, :0]], -1), _rand(2, 3),
           np.zeros(0, np.int64))  # a legacy 1-D empty tensor, skipped (torch gives it a zero-size zero grad)
    _check(lambda a: luban.cat([a]), lambda a: torch.cat([a]), _rand(2, 3))


@pytest.mark.parametrize("dtypes", [("int32", "float32"), ("bool", "int64"), ("uint8", "int8"), ("float16", "float64")])
def test_cat_and_stack_promote(device, dtypes):
    a, b = (np.arange(6).reshape(2, 3) % 2).astype(dtypes[0]), np.ones((2, 3), dtypes[1])
    _check(lambda a, b: luban.cat([a, b]), lambda a, b: torch.cat([a, b]), a, b)
    _check(lambda a, b: luban.stack([a, b], 2), lambda a, b: torch.stack([a, b], 2), a, b)


def test_stack(device):
    _check(lambda a, b, c: luban.stack([a, b, c], -1), lambda a, b, c: torch.stack([a, b, c], -1),
           _rand(2, 3), _rand(2, 3, seed=1), _rand(2, 3, seed=2))


def test_cat_and_stack_errors(device):
    with pytest.raises(RuntimeError, match=r"except in dimension 0, but got shapes \(2, 3\) and \(2, 4\)"):
        luban.cat([luban.zeros(2, 3), luban.zeros(2, 4)])
    with pytest.raises(RuntimeError, match=r"\(2, 3\) and \(2, 3, 1\)"):
        luban.cat([luban.zeros(2, 3), luban.zeros(2, 3, 1)], 1)
    with pytest.raises(RuntimeError, match="zero-dimensional"):
        luban.cat([luban.zeros(2), luban.zeros(())])
    with pytest.raises(RuntimeError, match="non-empty"):
        luban.cat([])
    with pytest.raises(RuntimeError, match=r"\(2, 3\) at entry 0 and \(3, 2\) at entry 1"):
        luban.stack([luban.zeros(2, 3), luban.zeros(3, 2)])
    with pytest.raises(IndexError, match="dimension out of range"):
        luban.cat([luban.zeros(2, 3)], 2)
