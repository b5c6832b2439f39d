"""Autograd: the engine, grad modes, leaves and views, checked against finite differences and PyTorch."""
from __future__ import annotations

import numpy as np
import pytest

import luban
from helpers import (View, assert_close, check_grad, compare_torch, cpu_device_available,
                     lt, rng_for, torch)

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed")


@pytest.fixture(autouse=True)
def _restore_grad_mode():
    prev = luban.is_grad_enabled()
    yield
    luban.set_grad_enabled(prev)


# ---- requires_grad, leaves ------------------------------------------------------------------------------
def test_requires_grad_flags(device):
    x = lt(np.ones(3, dtype=np.float32), requires_grad=True)
    c = lt(np.ones(3, dtype=np.float32))
    assert x.requires_grad and x.is_leaf and x.grad is None
    assert not c.requires_grad and c.is_leaf
    y = x * 2 + c
    assert y.requires_grad and not y.is_leaf
    z = c * 2
    assert not z.requires_grad and z.is_leaf
    assert not (x > 0).requires_grad  # comparisons are not differentiable
    assert not x.argmax().requires_grad
    c.requires_grad_()
    assert c.requires_grad and c.is_leaf
    c.requires_grad_(False)
    assert not c.requires_grad
    with pytest.raises(RuntimeError):
        y.requires_grad_(False)  # non-leaf


@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "bool"])
def test_requires_grad_on_non_float_raises(dtype, device):
    with pytest.raises(RuntimeError, match="floating point"):
        luban.tensor([1, 0], dtype=dtype, requires_grad=True)
    with pytest.raises(RuntimeError, match="floating point"):
        luban.tensor([1, 0], dtype=dtype).requires_grad_()


def test_backward_scalar_and_gradient_arg(device):
    a = np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.5]])
    x = lt(a, requires_grad=True)
    (x * x).sum().backward()
    assert_close(x.grad, 2 * a)
    assert x.grad.dtype is luban.float64 and not x.grad.requires_grad
    x2 = lt(a, requires_grad=True)
    g = np.array([[1.0, 0.0, 2.0], [-1.0, 3.0, 0.5]])
    (x2 * 3).backward(lt(g))
    assert_close(x2.grad, 3 * g)
    x3 = lt(a, requires_grad=True)
    (x3 * 3).backward(gradient=lt(g))
    assert_close(x3.grad, 3 * g)
    x4 = lt(a, requires_grad=True)
    x4.sum().backward(luban.tensor(2.0, dtype=luban.float64))  # explicit 0-d gradient
    assert_close(x4.grad, np.full_like(a, 2.0))
    # 1-element non-0-d output: implicit gradient allowed (numel == 1)
    x5 = lt(a, requires_grad=True)
    x5.sum(1, keepdim=True).sum(0).backward()
    assert_close(x5.grad, np.ones_like(a))


def test_backward_errors(device):
    x = lt(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(RuntimeError, match="scalar outputs"):
        (x * 2).backward()
    with pytest.raises(RuntimeError):
        (x * 2).backward(lt(np.ones((3, 2))))  # gradient of the wrong shape
    with pytest.raises(RuntimeError, match="does not require grad"):
        lt(np.ones(3)).sum().backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        (x > 0).sum().backward()


def test_leaf_backward(device):
    x = lt(np.array(3.0), requires_grad=True)
    x.backward()
    assert_close(x.grad, np.array(1.0))


def test_grad_accumulates_across_backward_calls(device):
    a = np.array([1.0, 2.0, -3.0])
    x = lt(a, requires_grad=True)
    (x * x).sum().backward()
    (x * 3).sum().backward()
    assert_close(x.grad, 2 * a + 3)
    # retain_graph: the same graph twice
    y = (x.exp()).sum()
    x.grad = None
    y.backward(retain_graph=True)
    y.backward()
    assert_close(x.grad, 2 * np.exp(a))
    # .grad = None resets
    x.grad = None
    (x * 5).sum().backward()
    assert_close(x.grad, np.full(3, 5.0))


def test_second_backward_through_freed_graph_raises(device):
    """torch: backward through a graph whose buffers were freed raises instead of silently doing nothing."""
    x = lt(np.array([1.0, 2.0]), requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError):
        y.backward()
    assert_close(x.grad, np.array([2.0, 4.0]))


def test_grad_only_on_leaves_and_retain_grad(device):
    a = np.array([1.0, 2.0, 3.0])
    x = lt(a, requires_grad=True)
    h = x * 2
    k = h * h
    k.retain_grad()
    out = (k + h).sum()
    out.backward()
    assert h.grad is None  # non-leaf without retain_grad
    assert_close(k.grad, np.ones(3))
    assert_close(x.grad, 2 * (2 * (2 * a)) + 2)
    c = lt(a)  # a leaf that does not require grad
    y = lt(a, requires_grad=True)
    (c * y).sum().backward()
    assert c.grad is None
    assert_close(y.grad, a)


def test_grad_through_multiple_paths(device):
    """A diamond, a tensor used twice in one op, and a long chain."""
    a = np.array([0.5, -1.0, 2.0])
    x = lt(a, requires_grad=True)
    y = x * 2
    z = y * y + y.exp() + x * y
    z.sum().backward()
    assert_close(x.grad, 8 * a + 2 * np.exp(2 * a) + 4 * a)
    w = lt(a, requires_grad=True)
    (w * w * w).sum().backward()
    assert_close(w.grad, 3 * a ** 2)
    v = lt(a, requires_grad=True)
    t = v
    for _ in range(500):  # deep graphs must not hit the recursion limit
        t = t + v * 0.001
    t.sum().backward()
    assert_close(v.grad, np.full(3, 1.5), rtol=1e-9)


def test_detach(device):
    a = np.array([1.0, 2.0, 3.0])
    x = lt(a, requires_grad=True)
    d = x.detach()
    assert not d.requires_grad and d.is_leaf
    assert_close(d, a)
    (x * x.detach()).sum().backward()
    assert_close(x.grad, a)  # no gradient through the detached factor
    y = lt(a, requires_grad=True)
    (y.data * y).sum().backward()
    assert_close(y.grad, a)
    z = lt(a, requires_grad=True)
    h = z * 2
    h.detach_()
    assert not h.requires_grad and h.is_leaf


# ---- grad modes ----------------------------------------------------------------------------------------------
def test_no_grad_context(device):
    x = lt(np.ones(3), requires_grad=True)
    with luban.no_grad():
        assert not luban.is_grad_enabled()
        y = x * 2
        assert not y.requires_grad
        with luban.enable_grad():
            assert luban.is_grad_enabled()
            z = x * 2
            assert z.requires_grad
        assert not luban.is_grad_enabled()
    assert luban.is_grad_enabled()
    assert (x * 2).requires_grad


def test_no_grad_restores_on_exception(device):
    with pytest.raises(ValueError):
        with luban.no_grad():
            raise ValueError
    assert luban.is_grad_enabled()


def test_grad_mode_decorators(device):
    x = lt(np.ones(3), requires_grad=True)

    @luban.no_grad()
    def f(t):
        assert not luban.is_grad_enabled()
        return t * 2

    @luban.enable_grad()
    def g(t):
        return t * 2

    assert not f(x).requires_grad
    assert luban.is_grad_enabled()
    with luban.no_grad():
        assert g(x).requires_grad
        assert not luban.is_grad_enabled()
    assert f.__name__ == "f"


def test_no_grad_bare_decorator(device):
    """torch.no_grad is also usable without parentheses: @torch.no_grad."""
    x = lt(np.ones(3), requires_grad=True)

    @luban.no_grad
    def f(t):
        return t * 2

    assert not f(x).requires_grad


def test_set_grad_enabled(device):
    x = lt(np.ones(3), requires_grad=True)
    luban.set_grad_enabled(False)
    assert not luban.is_grad_enabled()
    assert not (x * 2).requires_grad
    luban.set_grad_enabled(True)
    assert (x * 2).requires_grad


def test_set_grad_enabled_as_context_manager(device):
    """torch.set_grad_enabled(mode) also works as a context manager."""
    x = lt(np.ones(3), requires_grad=True)
    with luban.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert luban.is_grad_enabled()
    with luban.no_grad():
        with luban.set_grad_enabled(True):
            assert (x * 2).requires_grad
        assert not luban.is_grad_enabled()


# ---- gradients through broadcasting, views, casts, devices ---------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_grad_through_broadcasting(seed, device):
    rng = rng_for("bcast-grad", seed)
    shapes = [((3, 1), (4,)), ((1, 2, 1), (3, 1, 4)), ((5,), ()), ((2, 1, 3), (1, 1))][seed]
    a, b = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    x, y = lt(a, requires_grad=True), lt(b, requires_grad=True)
    out = x * y + x
    out.backward(lt(np.ones(out.shape)))
    assert tuple(x.grad.shape) == a.shape and tuple(y.grad.shape) == b.shape
    full = np.broadcast_shapes(a.shape, b.shape)
    gx = np.broadcast_to(b + 1, full)
    gy = np.broadcast_to(a, full)
    ax = tuple(range(len(full) - a.ndim)) + tuple(len(full) - a.ndim + i for i, s in enumerate(a.shape)
                                                   if s == 1 and full[len(full) - a.ndim + i] != 1)
    ay = tuple(range(len(full) - b.ndim)) + tuple(len(full) - b.ndim + i for i, s in enumerate(b.shape)
                                                   if s == 1 and full[len(full) - b.ndim + i] != 1)
    assert_close(x.grad, gx.sum(ax).reshape(a.shape))
    assert_close(y.grad, gy.sum(ay).reshape(b.shape))
    check_grad(lambda p, q: (p * q).exp() + p / (q * q + 1), a, b, device=device)
    compare_torch(lambda p, q: (p * q).exp() + p / (q * q + 1), lambda p, q: (p * q).exp() + p / (q * q + 1), a, b,
                  device=device)


VIEW_FNS = {
    "permute": lambda t: t.permute(2, 0, 1),
    "transpose": lambda t: t.transpose(0, 2),
    "narrow": lambda t: t.narrow(1, 1, 2),
    "strided": lambda t: t.narrow(2, 0, 4).unflatten(2, (2, 2)).narrow(3, 0, 1).squeeze(3),
    "expand": lambda t: t.narrow(1, 0, 1).expand(2, 5, 4),
    "flip": lambda t: t.flip((0, 2)),
    "reshape_of_permute": lambda t: t.permute(1, 0, 2).reshape(3, 8),
    "chain": lambda t: t.permute(2, 1, 0).narrow(0, 1, 2).flip(1).unsqueeze(0).expand(3, 2, 3, 2),
    "split_and_cat": lambda t: luban.cat(list(t.split(1, 1))[::-1], 1) if isinstance(t, luban.Tensor)
    else torch.cat(list(t.split(1, 1))[::-1], 1),
    "T_contiguous": lambda t: t.reshape(6, 4).T.contiguous(),
}


@pytest.mark.parametrize("name", list(VIEW_FNS))
def test_grad_through_views(name, device):
    fn = VIEW_FNS[name]
    a = rng_for("views", name).standard_normal((2, 3, 4))
    check_grad(lambda t: fn(t) * fn(t).sin(), a, device=device)
    compare_torch(lambda t: fn(t) * fn(t).sin(), lambda t: fn(t) * fn(t).sin(), a, device=device)


@pytest.mark.parametrize("kind", ["permuted", "sliced", "expanded"])
def test_grad_of_composite_through_noncontiguous_leaf_views(kind, device):
    rng = rng_for("composite", kind)
    v = View(kind, (3, 4), rng)
    a = rng.standard_normal(v.base_shape)
    w = rng.standard_normal((4, 2))

    def f(mod, x, wt):
        h = (v.apply(x).unsqueeze(-1) * wt).sum(1)  # (3, 2) = x @ w
        return h.tanh().logsumexp(0) + h.sigmoid().mean()

    check_grad(lambda x, wt: f(luban, x, wt), a, w, device=device)
    compare_torch(lambda x, wt: f(luban, x, wt), lambda x, wt: f(torch, x, wt), a, w, device=device)


def test_grad_dtype_follows_leaf_through_casts(device):
    x = lt(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    y = x.double() * 3
    assert y.dtype is luban.float64
    y.sum().backward()
    assert x.grad.dtype is luban.float32
    assert_close(x.grad, np.array([3.0, 3.0], dtype=np.float32))
    h = lt(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    (h.half() * 2).float().sum().backward()
    assert h.grad.dtype is luban.float32
    assert_close(h.grad, np.array([2.0, 2.0], dtype=np.float32))
    # int casts cut the graph
    k = lt(np.array([1.5, 2.5]), requires_grad=True)
    assert not k.long().requires_grad


def test_grad_across_devices():
    if not cpu_device_available():
        pytest.skip("cpu device not available")
    a = np.array([1.0, -2.0, 0.5])
    x = luban.tensor(a, device="numpy", requires_grad=True)
    y = x.to("cpu")
    assert y.device == "cpu" and y.requires_grad
    (y * y).sum().backward()
    assert x.grad.device == "numpy"
    assert_close(x.grad, 2 * a)


@needs_torch
def test_max_tie_gradients_split_evenly(device):
    """amax (and full max()) distribute the gradient evenly among tied maxima, like torch."""
    a = np.array([[1.0, 5.0, 5.0, 2.0], [3.0, 3.0, 3.0, 3.0]])
    x = lt(a, requires_grad=True)
    x.amax(1).sum().backward()
    assert_close(x.grad, np.array([[0, 0.5, 0.5, 0], [0.25, 0.25, 0.25, 0.25]]))
    x2 = lt(a, requires_grad=True)
    x2.max().backward()
    assert_close(x2.grad, np.array([[0, 0.5, 0.5, 0], [0, 0, 0, 0]]))
    for fn in (lambda t: t.amax(1), lambda t: t.amin(0), lambda t: t.max(), lambda t: t.amax((0, 1)),
               lambda t: t.maximum(t.flip(1)), lambda t: t.expand(3, 2, 4).amax(0)):
        compare_torch(fn, fn, a, device=device)


def test_reusing_an_intermediate_after_backward_is_not_silently_wrong(device):
    """torch raises ("backward through the graph a second time"); silently dropping h's history is wrong."""
    a = np.array([1.0, 2.0])
    x = lt(a, requires_grad=True)
    h = x * 2
    h.sum().backward()
    try:
        (h * x).sum().backward()
    except RuntimeError:
        return
    assert_close(x.grad, 2 + 4 * a)  # 2 from the first backward, d(2x * x)/dx = 4x from the second


@needs_torch
def test_zero_grad_of_unused_input(device):
    a, b = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    x, y = lt(a, requires_grad=True), lt(b, requires_grad=True)
    (x * 2).sum().backward()
    assert y.grad is None  # y is not in the graph at all, as in torch
    z = lt(b, requires_grad=True)
    (x * 0 + luban.where(x > 100, z, 0.0)).sum().backward()
    assert z.grad is not None and not np.any(z.grad.numpy())


@pytest.mark.parametrize("shape,dim", [((), 0), ((), -1), ((5,), 0), ((3, 4), -1), ((2, 3, 4), 1)])
def test_softmax_gradient_from_its_output(shape, dim):
    """softmax's backward rule (autograd.Softmax, from the stored output) against torch,
    a 0-d input (softmax 1, gradient 0) included."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(len(shape))
    xv, gv = rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)
    x = luban.tensor(xv, requires_grad=True)
    y = x.softmax(dim)
    (y * luban.tensor(gv)).sum().backward()
    xt = torch.tensor(xv, requires_grad=True)
    yt = xt.softmax(dim)
    (yt * torch.tensor(gv)).sum().backward()
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_relu_gradient_from_its_output_as_torch(device):
    """ReLU's backward reads its output as torch's does: no gradient at 0, through a nan
    (torch.relu(nan) is nan with gradient 1), and the value itself keeps nan."""
    torch = pytest.importorskip("torch")
    xv = np.array([-2.0, -0.0, 0.0, 1e-30, 3.0, np.nan, -np.inf, np.inf], np.float32)
    gv = np.arange(1, len(xv) + 1, dtype=np.float32)
    x = luban.tensor(xv, requires_grad=True)
    y = x.relu()
    (y * luban.tensor(gv)).sum().backward()
    xt = torch.tensor(xv, requires_grad=True)
    yt = torch.relu(xt)
    (yt * torch.tensor(gv)).sum().backward()
    np.testing.assert_array_equal(y.numpy(), yt.detach().numpy())
    np.testing.assert_array_equal(x.grad.numpy(), xt.grad.numpy())


def _set_evens(a, inplace):
    key = (slice(None), slice(0, None, 2))
    if inplace:
        a[key] = a[key] * 3.0 + 1.0
        return a
    mask = np.zeros(tuple(a.shape), np.float32)
    mask[key] = 1.0  # the reference (PyTorch): a + (2a + 1) on the evens
    return a + pytest.importorskip("torch").from_numpy(mask) * (a * 2.0 + 1.0)


IN_PLACE_AFTER_USE = {
    # each op in place (luban) or out of place (the reference: PyTorch refuses a gradient
    # through a value it saved and an in-place op changed, where luban's values cannot change)
    "mul_": lambda a, inplace: a.mul_(3.0) if inplace else a * 3.0,
    "add_": lambda a, inplace: a.add_(a * 0.5) if inplace else a + a * 0.5,
    "relu_": lambda a, inplace: a.relu_() if inplace else a.relu(),
    "setitem from itself": _set_evens,
    "twice": lambda a, inplace: a.mul_(2.0).add_(1.0).mul_(a) if inplace else (a * 2.0 + 1.0) * (a * 2.0 + 1.0),
}


def _after_use(t, case: str, inplace: bool):
    a = t * 1.5 - 0.25
    b = a * a  # reads a before the op
    a = IN_PLACE_AFTER_USE[case](a, inplace)
    return (a * 2 + b + a.exp()).sum()


@pytest.mark.parametrize("case", IN_PLACE_AFTER_USE)
def test_in_place_op_after_a_use_keeps_that_use_s_gradient(case):
    """luban's graph once walked a tensor's current Function: b = a * a, then a.mul_(3)
    sent b's gradient through the multiply by 3 too (a wrong gradient, silently)."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    tt, lt = torch.from_numpy(x).requires_grad_(), luban.tensor(x, requires_grad=True)
    _after_use(tt, case, inplace=False).backward()
    _after_use(lt, case, inplace=True).backward()
    np.testing.assert_allclose(lt.grad.numpy(), tt.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_retain_grad_after_an_in_place_op_sees_the_new_value_s_gradient():
    torch = pytest.importorskip("torch")
    x = np.arange(1, 6, dtype=np.float32).reshape(1, 5)
    grads = []
    for lib in (torch, luban):
        t = lib.tensor(x, requires_grad=True)
        y = t * 1.0
        y[:, 0::2] = y[:, 0::2] * 3.0 + 1.0
        y.retain_grad()
        (y * y).sum().backward()
        grads.append((t.grad.numpy(), y.grad.numpy()))
    for got, want in zip(grads[1], grads[0]):
        np.testing.assert_allclose(got, want)
