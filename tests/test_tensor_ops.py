"""Every Tensor op, forward and gradient, on every device.

Forward values are checked against NumPy (float32 luban vs a float64 NumPy reference),
gradients against central finite differences in float64 and, where PyTorch is installed,
values, dtypes and gradients against PyTorch in float64. Shapes are drawn at random
(fixed seeds) and include size-1 and broadcast dims; inputs are contiguous, permuted,
sliced (offset and strided) or expanded views.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import luban
from helpers import (VIEWS, Checks, View, assert_close, broadcast_shapes_pair, check_grad, compare_torch,
                     cpu_device_available, lt, random_shape, rng_for, torch)

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed")


def _shape_with_big_dim(rng, min_ndim=2, max_ndim=3):
    s = list(random_shape(rng, min_ndim=min_ndim, max_ndim=max_ndim))
    if all(d == 1 for d in s):
        s[-1] = 3
    return tuple(s)


# ================================================================================================
# unary elementwise
# ================================================================================================
def _dom_any(r, s):
    return r.uniform(-2, 2, s)


def _dom_nonzero(r, s):  # away from kinks at 0 (abs, relu, sign, reciprocal)
    return r.choice([-1.0, 1.0], s) * r.uniform(0.2, 2, s)


def _dom_pos(r, s):
    return r.uniform(0.2, 3, s)


def _dom_log1p(r, s):
    return r.uniform(-0.5, 2, s)


def _dom_noninteger(r, s):  # away from integers and from halves (floor, ceil, round, trunc)
    return r.integers(-3, 3, s) + r.choice([0.2, 0.3, 0.7, 0.8], s) + r.uniform(-0.05, 0.05, s)


def _dom_tan(r, s):
    return r.uniform(-1.2, 1.2, s)


def _np_erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


# name: (luban/torch method call, numpy reference, domain, float64 atol vs torch)
UNARY = {
    "abs": (lambda t: t.abs(), np.abs, _dom_nonzero, None),
    "neg": (lambda t: t.neg(), np.negative, _dom_any, None),
    "__neg__": (lambda t: -t, np.negative, _dom_any, None),
    "exp": (lambda t: t.exp(), np.exp, _dom_any, None),
    "exp2": (lambda t: t.exp2(), np.exp2, _dom_any, None),
    "expm1": (lambda t: t.expm1(), np.expm1, _dom_any, None),
    "log": (lambda t: t.log(), np.log, _dom_pos, None),
    "log2": (lambda t: t.log2(), np.log2, _dom_pos, None),
    "log10": (lambda t: t.log10(), np.log10, _dom_pos, None),
    "log1p": (lambda t: t.log1p(), np.log1p, _dom_log1p, None),
    "sqrt": (lambda t: t.sqrt(), np.sqrt, _dom_pos, None),
    "rsqrt": (lambda t: t.rsqrt(), lambda x: 1 / np.sqrt(x), _dom_pos, None),
    "reciprocal": (lambda t: t.reciprocal(), lambda x: 1 / x, _dom_nonzero, None),
    "square": (lambda t: t.square(), np.square, _dom_any, None),
    "sin": (lambda t: t.sin(), np.sin, _dom_any, None),
    "cos": (lambda t: t.cos(), np.cos, _dom_any, None),
    "tan": (lambda t: t.tan(), np.tan, _dom_tan, None),
    "tanh": (lambda t: t.tanh(), np.tanh, _dom_any, None),
    "sigmoid": (lambda t: t.sigmoid(), _np_sigmoid, _dom_any, None),
    "relu": (lambda t: t.relu(), lambda x: np.maximum(x, 0), _dom_nonzero, None),
    # erf is documented as an approximation with |error| < 1.5e-7
    "erf": (lambda t: t.erf(), _np_erf, _dom_any, 2e-7),
    "sign": (lambda t: t.sign(), np.sign, _dom_nonzero, None),
    "trunc": (lambda t: t.trunc(), np.trunc, _dom_noninteger, None),
    "floor": (lambda t: t.floor(), np.floor, _dom_noninteger, None),
    "ceil": (lambda t: t.ceil(), np.ceil, _dom_noninteger, None),
    "round": (lambda t: t.round(), np.round, _dom_noninteger, None),
    "frac": (lambda t: t.frac(), lambda x: x - np.trunc(x), _dom_noninteger, None),
    "clamp_min": (lambda t: t.clamp(min=-0.5), lambda x: np.maximum(x, -0.5), _dom_any, None),
    "clamp_max": (lambda t: t.clamp(max=0.5), lambda x: np.minimum(x, 0.5), _dom_any, None),
    "clamp_both": (lambda t: t.clamp(-0.5, 0.7), lambda x: np.clip(x, -0.5, 0.7), _dom_any, None),
}


def _avoid(x, points, gap=1e-3):
    """Nudge values within `gap` of a kink (clamp bounds) off it, so finite differences are valid."""
    x = x.copy()
    for p in points:
        near = np.abs(x - p) < gap
        x[near] = p + 2 * gap
    return x


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("name", list(UNARY))
def test_unary(name, view, device):
    fn, ref, dom, atol64 = UNARY[name]
    rng = rng_for("unary", name, view)
    v = View(view, _shape_with_big_dim(rng), rng)
    base = _avoid(dom(rng, v.base_shape), [-0.5, 0.7, 0.5])
    # forward, float32, against NumPy in float64
    b32 = base.astype(np.float32)
    got = fn(v.apply(lt(b32)))
    assert got.dtype is luban.float32
    assert_close(got, ref(v.np_apply(b32.astype(np.float64))), rtol=1e-5, atol=1e-6)
    # gradient against finite differences of the NumPy reference
    check_grad(lambda b: fn(v.apply(b)), base, device=device, ref=lambda b: ref(v.np_apply(b)))
    # values, dtypes and gradients against torch, float64
    compare_torch(lambda b: fn(v.apply(b)), lambda b: fn(v.apply(b)), base, device=device,
                  atol=atol64 or 1e-12)


UNARY_FLOAT_OUT = ["exp", "log", "sqrt", "sin", "cos", "tanh", "sigmoid", "erf", "rsqrt", "reciprocal"]


@needs_torch
@pytest.mark.parametrize("name", UNARY_FLOAT_OUT)
def test_unary_on_integers_gives_float32(name, device):
    fn = UNARY[name][0]
    a = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64)
    compare_torch(fn, fn, a, device=device, grad=False, rtol=1e-5, atol=1e-6)


@needs_torch
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", ["abs", "neg", "exp", "log", "sqrt", "sin", "tanh", "sigmoid", "relu", "square"])
def test_unary_half_precision(name, dtype, device):
    fn, _, dom, _ = UNARY[name]
    base = dom(rng_for("half", name), (3, 5)).astype(np.float32)
    x = lt(base).to(dtype)
    tx = torch.tensor(base).to(getattr(torch, dtype))
    got, exp = fn(x), fn(tx)
    assert got.dtype.name == dtype
    tol = 1e-2 if dtype == "float16" else 2e-2
    assert_close(got, exp, rtol=tol, atol=tol)


def test_sigmoid_tanh_large_inputs_no_nan(device):
    vals = np.array([-1000.0, -100.0, -30.0, 0.0, 30.0, 100.0, 1000.0])
    for dt in ("float32", "float64"):
        for name in ("sigmoid", "tanh", "exp_neg_sq"):
            fn = {"sigmoid": lambda t: t.sigmoid(), "tanh": lambda t: t.tanh(),
                  "exp_neg_sq": lambda t: (-(t * t)).exp()}[name]
            x = lt(vals.astype(dt), requires_grad=True)
            y = fn(x)
            y.backward(luban.ones_like(y))
            assert np.all(np.isfinite(y.numpy())), (name, dt, y.numpy())
            assert np.all(np.isfinite(x.grad.numpy())), (name, dt, x.grad.numpy())
            if torch is not None:
                tx = torch.tensor(vals.astype(dt), requires_grad=True)
                ty = fn(tx)
                ty.backward(torch.ones_like(ty))
                assert_close(y, ty, rtol=1e-6, atol=1e-7, what=f"{name} {dt}")
                assert_close(x.grad, tx.grad, rtol=1e-6, atol=1e-7, what=f"{name} grad {dt}")


@needs_torch
def test_round_half_to_even(device):
    a = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, -0.49, 0.51, 1e6 + 0.5], dtype=np.float64)
    for dt in ("float32", "float64"):
        compare_torch(lambda t: t.round(), lambda t: t.round(), a, dtype=dt, device=device, grad=False)


# ---- nn.functional activations (gelu, silu, softplus) ------------------------------------------------
def _nnf():
    return pytest.importorskip("luban.nn.functional", reason="luban.nn.functional does not exist yet")


ACTIVATIONS = {
    "gelu": (lambda F, t: F.gelu(t), lambda x: 0.5 * x * (1 + _np_erf(x / math.sqrt(2)))),
    "gelu_tanh": (lambda F, t: F.gelu(t, approximate="tanh"),
                  lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))),
    "silu": (lambda F, t: F.silu(t), lambda x: x * _np_sigmoid(x)),
    "softplus": (lambda F, t: F.softplus(t), lambda x: np.log1p(np.exp(x))),
    "softplus_beta": (lambda F, t: F.softplus(t, beta=2.0, threshold=3.0),
                      lambda x: np.where(2 * x > 3.0, x, np.log1p(np.exp(2 * x)) / 2)),
}


@pytest.mark.parametrize("view", ["contig", "permuted", "expanded"])
@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation(name, view, device):
    F = _nnf()
    fn, ref = ACTIVATIONS[name]
    rng = rng_for("act", name, view)
    v = View(view, _shape_with_big_dim(rng), rng)
    base = rng.uniform(-3, 3, v.base_shape)
    base = _avoid(base, [1.5])  # softplus_beta threshold kink
    got = fn(F, v.apply(lt(base.astype(np.float32))))
    assert_close(got, ref(v.np_apply(base.astype(np.float32).astype(np.float64))), rtol=1e-5, atol=1e-6)
    check_grad(lambda b: fn(F, v.apply(b)), base, device=device, ref=lambda b: ref(v.np_apply(b)))
    if torch is not None:
        import torch.nn.functional as TF
        compare_torch(lambda b: fn(F, v.apply(b)), lambda b: fn(TF, v.apply(b)), base, device=device, atol=2e-7)


def test_activation_large_inputs(device):
    F = _nnf()
    vals = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    for name in ACTIVATIONS:
        x = lt(vals, requires_grad=True)
        y = ACTIVATIONS[name][0](F, x)
        y.sum().backward()
        assert np.all(np.isfinite(y.numpy())), (name, y.numpy())
        assert np.all(np.isfinite(x.grad.numpy())), (name, x.grad.numpy())


# ================================================================================================
# binary elementwise (float), with broadcasting and views
# ================================================================================================
def _dom_b_nonzero(r, s):
    return r.choice([-1.0, 1.0], s) * r.uniform(0.5, 2, s)


BINARY = {
    "add": (lambda a, b: a + b, np.add, _dom_any, _dom_any),
    "add_method": (lambda a, b: a.add(b), np.add, _dom_any, _dom_any),
    "add_alpha": (lambda a, b: a.add(b, alpha=2.5), lambda a, b: a + 2.5 * b, _dom_any, _dom_any),
    "sub": (lambda a, b: a - b, np.subtract, _dom_any, _dom_any),
    "sub_alpha": (lambda a, b: a.sub(b, alpha=-1.5), lambda a, b: a + 1.5 * b, _dom_any, _dom_any),
    "mul": (lambda a, b: a * b, np.multiply, _dom_any, _dom_any),
    "div": (lambda a, b: a / b, np.divide, _dom_any, _dom_b_nonzero),
    "pow": (lambda a, b: a ** b, np.power, _dom_pos, _dom_any),
    "maximum": (lambda a, b: a.maximum(b), np.maximum, _dom_any, _dom_any),
    "minimum": (lambda a, b: a.minimum(b), np.minimum, _dom_any, _dom_any),
    "floor_divide": (lambda a, b: a // b, np.floor_divide, _dom_any, _dom_b_nonzero),
    "remainder": (lambda a, b: a % b, np.mod, _dom_any, _dom_b_nonzero),
    "fmod": (lambda a, b: a.fmod(b), np.fmod, _dom_any, _dom_b_nonzero),
    "lerp_tensor_weight": (lambda a, b: a.lerp(b * 0 + 3.0, b), lambda a, b: a + (3.0 - a) * b, _dom_any, _dom_any),
}


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("name", list(BINARY))
def test_binary(name, view, device):
    fn, ref, dom_a, dom_b = BINARY[name]
    rng = rng_for("binary", name, view)
    sa, sb = broadcast_shapes_pair(rng)
    v = View(view, sa, rng)
    for _ in range(50):  # floor_divide/remainder/fmod: keep a/b away from integers (discontinuities)
        a, b = dom_a(rng, v.base_shape), dom_b(rng, sb)
        q = v.np_apply(a) / b
        if name not in ("floor_divide", "remainder", "fmod") or np.all(np.abs(q - np.round(q)) > 1e-3):
            break
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    got = fn(v.apply(lt(a32)), lt(b32))
    expected = ref(v.np_apply(a32.astype(np.float64)), b32.astype(np.float64))
    assert tuple(got.shape) == np.broadcast_shapes(sa, sb)
    assert got.dtype is luban.float32
    assert_close(got, expected, rtol=1e-5, atol=1e-5 if name in ("remainder", "fmod") else 1e-6)
    check_grad(lambda x, y: fn(v.apply(x), y), a, b, device=device, ref=lambda x, y: ref(v.np_apply(x), y))
    # torch has no derivative for floor_divide (it is 0 almost everywhere, checked above)
    compare_torch(lambda x, y: fn(v.apply(x), y), lambda x, y: fn(v.apply(x), y), a, b, device=device,
                  grad=name != "floor_divide")


SCALAR_CASES = {
    "t+2": (lambda t: t + 2, lambda x: x + 2),
    "2+t": (lambda t: 2 + t, lambda x: 2 + x),
    "t-1.5": (lambda t: t - 1.5, lambda x: x - 1.5),
    "3-t": (lambda t: 3 - t, lambda x: 3 - x),
    "t*2.5": (lambda t: t * 2.5, lambda x: x * 2.5),
    "-2*t": (lambda t: -2 * t, lambda x: -2 * x),
    "t/3": (lambda t: t / 3, lambda x: x / 3),
    "2/t": (lambda t: 2 / t, lambda x: 2 / x),
    "t**2": (lambda t: t ** 2, lambda x: x ** 2),
    "t**3": (lambda t: t ** 3, lambda x: x ** 3),
    "t**-1": (lambda t: t ** -1, lambda x: x ** -1.0),
    "t**-2": (lambda t: t ** -2, lambda x: x ** -2.0),
    "t**0.5": (lambda t: t.abs() ** 0.5, lambda x: np.abs(x) ** 0.5),
    "t**1.5": (lambda t: t.abs() ** 1.5, lambda x: np.abs(x) ** 1.5),
    "t**7": (lambda t: t ** 7, lambda x: x ** 7),
    "t**0": (lambda t: t ** 0, lambda x: x ** 0),
    "t**1": (lambda t: t ** 1, lambda x: x ** 1),
    "2**t": (lambda t: 2 ** t, lambda x: 2.0 ** x),
    "0.5**t": (lambda t: 0.5 ** t, lambda x: 0.5 ** x),
    "t//0.7": (lambda t: t // 0.7, lambda x: x // 0.7),
    "t%0.7": (lambda t: t % 0.7, lambda x: np.mod(x, 0.7)),
    "t%-0.7": (lambda t: t % -0.7, lambda x: np.mod(x, -0.7)),
    "max(t,0.3)": (lambda t: t.maximum(luban.tensor(0.3, dtype=t.dtype) if isinstance(t, luban.Tensor)
                                       else torch.tensor(0.3, dtype=t.dtype)), lambda x: np.maximum(x, 0.3)),
}


@pytest.mark.parametrize("case", list(SCALAR_CASES))
def test_binary_with_scalar(case, device):
    fn, ref = SCALAR_CASES[case]
    rng = rng_for("scalar", case)
    v = View(["contig", "permuted", "sliced", "expanded"][len(case) % 4], _shape_with_big_dim(rng), rng)
    base = _dom_nonzero(rng, v.base_shape)
    if "//" in case or "%" in case:
        q = base / 0.7
        base = np.where(np.abs(q - np.round(q)) < 1e-3, base + 0.1, base)
    base = _avoid(base, [0.3])
    b32 = base.astype(np.float32)
    got = fn(v.apply(lt(b32)))
    assert got.dtype is luban.float32, got.dtype
    assert_close(got, ref(v.np_apply(b32.astype(np.float64))), rtol=1e-5, atol=2e-6)
    check_grad(lambda b: fn(v.apply(b)), base, device=device, ref=lambda b: ref(v.np_apply(b)))
    compare_torch(lambda b: fn(v.apply(b)), lambda b: fn(v.apply(b)), base, device=device, grad="//" not in case)


# ---- integer and sign semantics of / // % -------------------------------------------------------
@needs_torch
@pytest.mark.parametrize("dtype", ["int64", "int32", "int16", "int8", "float32", "float64"])
@pytest.mark.parametrize("op", ["add", "sub", "mul", "truediv", "floordiv", "mod", "fmod"])
def test_arith_negative_operands(op, dtype, device):
    a = np.array([-7, 7, -7, 7, 0, -1, 5, -6, 9, -9, 3], dtype=dtype)
    b = np.array([2, -2, -2, 2, 3, 4, -5, 4, 3, -3, 7], dtype=dtype)
    fn = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
          "truediv": lambda x, y: x / y, "floordiv": lambda x, y: x // y, "mod": lambda x, y: x % y,
          "fmod": lambda x, y: x.fmod(y)}[op]
    compare_torch(fn, fn, a, b, dtype=dtype, device=device, grad=False, rtol=1e-6, atol=1e-6)
    # with Python scalars on either side
    for s in (3, -3):
        compare_torch(lambda x: fn(x, s), lambda x: fn(x, s), a, dtype=dtype, device=device, grad=False,
                      rtol=1e-6, atol=1e-6)
        if op != "fmod":
            compare_torch(lambda x: fn(s, x), lambda x: fn(s, x), b, dtype=dtype, device=device, grad=False,
                          rtol=1e-6, atol=1e-6)


@needs_torch
def test_int_division_large_values(device):
    a = np.array([2 ** 40 + 3, -(2 ** 40) - 3, 2 ** 62, -(2 ** 62) + 1], dtype=np.int64)
    b = np.array([7, 7, -3, 5], dtype=np.int64)
    for fn in (lambda x, y: x // y, lambda x, y: x % y, lambda x, y: x + y, lambda x, y: x * y):
        compare_torch(fn, fn, a, b, device=device, grad=False)


# ---- pow ------------------------------------------------------------------------------------------
@needs_torch
def test_pow_special_cases(device):
    base = np.array([-2.0, -2.0, -1.5, 0.0, 0.0, 0.0, 2.0, -3.0, 4.0, -0.5])
    expo = np.array([3.0, 2.0, 2.0, 0.0, 2.0, 0.5, -1.0, -1.0, 0.5, 0.5])  # last: nan (neg ** non-integer)
    chk = Checks()
    for dt in ("float32", "float64"):
        chk(f"{dt} tensor ** tensor", compare_torch, lambda a, b: a ** b, lambda a, b: a ** b, base, expo, dtype=dt,
            device=device, grad=False, rtol=1e-6, atol=1e-7)
    # 0 ** 0 = 1 for every dtype, scalar and tensor exponents
    for dt in ("float32", "int64", "int32"):
        z = np.zeros(3, dtype=dt)
        chk(f"{dt} zeros ** 0", compare_torch, lambda t: t ** 0, lambda t: t ** 0, z, dtype=dt, device=device,
            grad=False)
        chk(f"{dt} zeros ** zeros", compare_torch, lambda t: t ** t, lambda t: t ** t, z, dtype=dt, device=device,
            grad=False)
    chk.done()


@needs_torch
def test_pow_negative_base_integer_exponent_grad(device):
    base = np.array([-2.0, -1.5, -0.7, 1.3, 2.0])
    expo = np.array([3.0, 2.0, 4.0, 3.0, -2.0])
    # d/d(base) only: d/d(exponent) = x**y * log(x) is undefined (nan in torch) for x < 0
    compare_torch(lambda a: a ** luban.tensor(expo), lambda a: a ** torch.tensor(expo), base, device=device,
                  rtol=1e-9, atol=1e-10)
    for e in (2, 3, -1, -3, 5):
        compare_torch(lambda a: a ** e, lambda a: a ** e, base, device=device)
        check_grad(lambda a: a ** e, base, device=device, ref=lambda a: a ** float(e))


@needs_torch
@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "float32"])
def test_pow_dtypes(dtype, device):
    a = np.array([0, 1, 2, 3, 5], dtype=dtype)
    e = np.array([3, 0, 5, 2, 1], dtype=dtype)
    chk = Checks()
    chk("tensor ** tensor", compare_torch, lambda x, y: x ** y, lambda x, y: x ** y, a, e, dtype=dtype, device=device,
        grad=False)
    for s in (2, 3, 0, 2.5, 0.5):
        chk(f"tensor ** {s}", compare_torch, lambda x: x ** s, lambda x: x ** s, a, dtype=dtype, device=device,
            grad=False, rtol=1e-6)
    chk("2 ** tensor", compare_torch, lambda x: 2 ** x, lambda x: 2 ** x, a, dtype=dtype, device=device, grad=False)
    chk("1.5 ** tensor", compare_torch, lambda x: 1.5 ** x, lambda x: 1.5 ** x, a, dtype=dtype, device=device,
        grad=False, rtol=1e-6)
    chk.done()


@needs_torch
def test_pow_int_large_exact(device):
    a = np.array([3, -3, 7, 2], dtype=np.int64)
    for e in (5, 13, 20, 39):
        compare_torch(lambda x: x ** e, lambda x: x ** e, a, device=device, grad=False)


# ---- clamp ----------------------------------------------------------------------------------------
@needs_torch
def test_clamp_variants(device):
    a = np.array([[-3.0, -0.6, 0.1, 0.25, 2.0, 9.0]])  # no value on a bound (see test_clamp_grad_at_bounds)
    cases = [dict(min=-1.0), dict(max=0.5), dict(min=-1.0, max=0.5), dict(min=0, max=1)]
    for kw in cases:
        compare_torch(lambda t: t.clamp(**kw), lambda t: t.clamp(**kw), a, device=device)
        compare_torch(lambda t: t.clip(**kw), lambda t: t.clip(**kw), a, dtype="float32", device=device)
    ai = np.array([-5, -1, 0, 3, 8], dtype=np.int64)
    compare_torch(lambda t: t.clamp(-2, 4), lambda t: t.clamp(-2, 4), ai, device=device, grad=False)
    compare_torch(lambda t: t.clamp(min=1.5), lambda t: t.clamp(min=1.5), ai, device=device, grad=False)
    # tensor bounds, broadcast
    lo, hi = np.array([[-1.0], [0.15]]), np.array([0.2, 0.3, 0.4, 0.55, 0.6, 0.7])
    a2 = np.concatenate([a, a[:, ::-1]])
    compare_torch(lambda t, l, h: t.clamp(l, h), lambda t, l, h: t.clamp(l, h), a2, lo, hi, device=device)
    with pytest.raises(RuntimeError):
        lt(a).clamp()


@needs_torch
def test_clamp_grad_at_bounds(device):
    """torch: d clamp(x, lo, hi)/dx = 1 where lo <= x <= hi, boundaries included."""
    a = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    for kw in (dict(min=-0.5, max=0.5), dict(min=-0.5), dict(max=0.5)):
        compare_torch(lambda t: t.clamp(**kw), lambda t: t.clamp(**kw), a, device=device)


@needs_torch
def test_abs_relu_grad_at_zero(device):
    a = np.array([-1.0, 0.0, 2.0])
    compare_torch(lambda t: t.relu(), lambda t: t.relu(), a, device=device)
    compare_torch(lambda t: t.abs(), lambda t: t.abs(), a, device=device)


@needs_torch
def test_maximum_minimum_ties_and_nan(device):
    a = np.array([1.0, 2.0, np.nan, 3.0, -0.0, 5.0, np.nan])
    b = np.array([1.0, 3.0, 1.0, np.nan, 0.0, 5.0, np.nan])
    # nan propagates (values only: gradients at nan are not specified)
    for dt in ("float32", "float64"):
        compare_torch(lambda x, y: x.maximum(y), lambda x, y: torch.maximum(x, y), a, b, dtype=dt, device=device,
                      grad=False)
        compare_torch(lambda x, y: x.minimum(y), lambda x, y: torch.minimum(x, y), a, b, dtype=dt, device=device,
                      grad=False)
    # gradients at ties split evenly (torch)
    a, b = np.array([1.0, 2.0, -0.0, 5.0, 4.0]), np.array([1.0, 3.0, 0.0, 5.0, -1.0])
    compare_torch(lambda x, y: x.maximum(y), lambda x, y: torch.maximum(x, y), a, b, device=device)
    compare_torch(lambda x, y: x.minimum(y), lambda x, y: torch.minimum(x, y), a, b, device=device)
    ai, bi = np.array([3, -2, 7, 0], dtype=np.int32), np.array([-1, -2, 9, 0], dtype=np.int32)
    compare_torch(lambda x, y: x.maximum(y), lambda x, y: torch.maximum(x, y), ai, bi, device=device, grad=False)
    compare_torch(lambda x, y: x.minimum(y), lambda x, y: torch.minimum(x, y), ai, bi, device=device, grad=False)
    au, bu = np.array([3, 250, 7, 0], dtype=np.uint8), np.array([200, 2, 9, 0], dtype=np.uint8)
    compare_torch(lambda x, y: x.minimum(y), lambda x, y: torch.minimum(x, y), au, bu, device=device, grad=False)
    compare_torch(lambda x, y: x.maximum(y), lambda x, y: torch.maximum(x, y), au, bu, device=device, grad=False)


# ---- comparisons, logical ops, where -----------------------------------------------------------------
CMP = {
    "lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b, "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
}


@pytest.mark.parametrize("name", list(CMP))
def test_comparisons(name, device):
    fn = CMP[name]
    npfn = {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal, "eq": np.equal,
            "ne": np.not_equal}[name]
    a = np.array([[1.0, 2.0, np.nan, 3.0, -np.inf, 0.0], [5.0, -1.0, 2.0, np.nan, np.inf, -0.0]], dtype=np.float32)
    b = np.array([[1.0, 3.0, 1.0, np.nan, -np.inf, -0.0]], dtype=np.float32)
    got = fn(lt(a), lt(b))
    assert got.dtype is luban.bool
    assert_close(got, npfn(a, b), what=f"{name} float with nan/inf")
    # with a scalar on either side, on a permuted view
    x = lt(a.T.copy()).permute(1, 0)
    assert_close(fn(x, 2.0), npfn(a, 2.0), what=f"{name} tensor-scalar")
    assert_close(fn(2, x), npfn(2, a), what=f"{name} scalar-tensor")
    ai, bi = np.array([-3, 0, 4, 7], dtype=np.int64), np.array([[-3], [5]], dtype=np.int32)
    assert_close(fn(lt(ai), lt(bi)), npfn(ai, bi), what=f"{name} int broadcast")
    # int tensor vs float scalar compares in float (1 < 1.5)
    assert_close(fn(lt(ai), 0.5), npfn(ai, 0.5), what=f"{name} int tensor vs float scalar")
    ab = np.array([True, False, True, False])
    assert_close(fn(lt(ab), lt(ab[::-1].copy())), npfn(ab, ab[::-1]), what=f"{name} bool")
    au = np.array([0, 200, 255, 3], dtype=np.uint8)
    assert_close(fn(lt(au), 100), npfn(au.astype(np.int64), 100), what=f"{name} uint8 vs int")


def test_logical_ops(device):
    a = np.array([[True, False, True, False]])
    b = np.array([[True], [False]])
    x, y = lt(a), lt(b)
    assert_close(x.logical_and(y), np.logical_and(a, b))
    assert_close(x.logical_or(y), np.logical_or(a, b))
    assert_close(x.logical_xor(y), np.logical_xor(a, b))
    assert_close(x.logical_not(), np.logical_not(a))
    assert_close(luban.logical_and(x, y), np.logical_and(a, b))
    assert_close(x & y, a & b)
    assert_close(x | y, a | b)
    assert_close(x ^ y, a ^ b)
    assert_close(~x, ~a)
    # numbers are truthy when nonzero; results are bool
    f = np.array([0.0, -2.5, np.nan, 3.0])
    i = np.array([0, 1, -1, 0], dtype=np.int32)
    for fn, npfn in ((lambda p, q: p.logical_and(q), np.logical_and), (lambda p, q: p.logical_or(q), np.logical_or),
                     (lambda p, q: p.logical_xor(q), np.logical_xor)):
        got = fn(lt(f), lt(i))
        assert got.dtype is luban.bool
        assert_close(got, npfn(f, i))
    assert_close(lt(f).logical_not(), np.logical_not(f))
    # bitwise on integers
    p, q = np.array([12, -7, 0, 255], dtype=np.int32), np.array([10, 3, -1, 15], dtype=np.int32)
    assert_close(lt(p) & lt(q), p & q)
    assert_close(lt(p) | lt(q), p | q)
    assert_close(lt(p) ^ lt(q), p ^ q)
    assert_close(~lt(p), ~p)
    u = np.array([0, 1, 200], dtype=np.uint8)
    assert_close(~lt(u), ~u)
    with pytest.raises(RuntimeError):
        lt(f) & lt(f)


def test_where(device):
    rng = rng_for("where")
    c = rng.random((3, 1, 4)) > 0.5
    a = rng.standard_normal((2, 4))
    b = rng.standard_normal((3, 2, 1))
    got = luban.where(lt(c), lt(a.astype(np.float32)), lt(b.astype(np.float32)))
    assert_close(got, np.where(c, a.astype(np.float32), b.astype(np.float32)))
    # scalar branches and promotion
    ai = np.array([[1, 2, 3, 4]], dtype=np.int64)
    assert_close(luban.where(lt(c), lt(ai), 0), np.where(c, ai, 0))
    assert luban.where(lt(c), lt(ai), 0).dtype is luban.int64
    assert luban.where(lt(c), lt(ai), 0.5).dtype is luban.float32
    assert luban.where(lt(c), 1.0, 0.0).dtype is luban.float32
    assert luban.where(lt(c), lt(a.astype(np.float64)), lt(ai)).dtype is luban.float64
    assert_close(luban.where(lt(c), 1.0, -1.0), np.where(c, 1.0, -1.0))
    # non-bool condition: nonzero is true
    cf = np.array([0.0, 2.0, -1.0, 0.0])
    assert_close(luban.where(lt(cf), lt(np.ones(4)), lt(np.zeros(4))), np.where(cf != 0, 1.0, 0.0))
    # gradient: flows to the chosen branch only; broadcast branches are summed
    check_grad(lambda x, y: luban.where(lt(c, device=device), x, y), a, b, device=device,
               ref=lambda x, y: np.where(c, x, y))
    compare_torch(lambda x, y: luban.where(lt(c, device=device), x, y),
                  lambda x, y: torch.where(torch.tensor(c), x, y), a, b, device=device)
    x = lt(a, requires_grad=True)
    luban.where(lt(c), x, 0.0).sum().backward()
    assert_close(x.grad, np.broadcast_to(c, (3, 2, 4)).sum(0).astype(np.float64))


# ---- in-place ops ------------------------------------------------------------------------------------
INPLACE = {
    "add_": (lambda t: t.add_(2.5), lambda a: a + 2.5),
    "add_tensor": (lambda t: t.add_(luban.tensor([1.0, 2.0, 3.0], dtype=t.dtype, device=t.device)),
                   lambda a: a + np.array([1.0, 2.0, 3.0])),
    "add_alpha": (lambda t: t.add_(luban.ones_like(t), alpha=-2), lambda a: a - 2),
    "sub_": (lambda t: t.sub_(1.5), lambda a: a - 1.5),
    "mul_": (lambda t: t.mul_(-3), lambda a: a * -3),
    "div_": (lambda t: t.div_(4), lambda a: a / 4),
    "clamp_": (lambda t: t.clamp_(-0.5, 0.5), lambda a: np.clip(a, -0.5, 0.5)),
    "clamp_min": (lambda t: t.clamp_(min=0.0), lambda a: np.maximum(a, 0.0)),
    "zero_": (lambda t: t.zero_(), lambda a: np.zeros_like(a)),
    "fill_": (lambda t: t.fill_(7.25), lambda a: np.full_like(a, 7.25)),
    "iadd": (lambda t: t.__iadd__(1), lambda a: a + 1),
    "imul": (lambda t: t.__imul__(2), lambda a: a * 2),
    "isub": (lambda t: t.__isub__(2), lambda a: a - 2),
    "idiv": (lambda t: t.__itruediv__(2), lambda a: a / 2),
}


@pytest.mark.parametrize("name", list(INPLACE))
def test_inplace_on_leaf_under_no_grad(name, device):
    fn, ref = INPLACE[name]
    a = rng_for("inplace", name).standard_normal((2, 3)).astype(np.float32)
    # a leaf requiring grad, updated under no_grad (an optimizer step)
    x = lt(a, requires_grad=True)
    with luban.no_grad():
        out = fn(x)
    assert out is x, "in-place op must return self"
    assert_close(x, ref(a.astype(np.float64)))
    assert x.requires_grad and x.is_leaf and x.dtype is luban.float32 and tuple(x.shape) == (2, 3)
    # the updated leaf still works in a new graph
    (x * 2).sum().backward()
    assert_close(x.grad, np.full((2, 3), 2.0))
    # a plain tensor outside no_grad
    y = lt(a)
    fn(y)
    assert_close(y, ref(a.astype(np.float64)))


@pytest.mark.parametrize("name", list(INPLACE))
def test_inplace_on_leaf_requiring_grad_raises(name, device):
    fn = INPLACE[name][0]
    x = lt(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        fn(x)


def test_inplace_int_keeps_dtype(device):
    x = lt(np.array([1, 2, 3], dtype=np.int32))
    x.add_(2)
    x.mul_(3)
    assert x.dtype is luban.int32
    assert_close(x, np.array([9, 12, 15], dtype=np.int32))
    x.fill_(-4)
    assert_close(x, np.array([-4, -4, -4], dtype=np.int32))


def test_inplace_on_nonleaf_tracks_grad(device):
    a = np.array([1.0, -2.0, 3.0])
    x = lt(a, requires_grad=True)
    y = x * 2
    y.add_(1)
    y.mul_(x)  # y = (2x + 1) * x
    y.sum().backward()
    assert_close(y, (2 * a + 1) * a)
    assert_close(x.grad, 4 * a + 1)
    if torch is not None:
        tx = torch.tensor(a, requires_grad=True)
        ty = tx * 2
        ty.add_(1)
        ty.mul_(tx)
        ty.sum().backward()
        assert_close(x.grad, tx.grad)


def test_inplace_shape_mismatch_raises(device):
    x = lt(np.zeros((2, 3)))
    with pytest.raises(RuntimeError):
        x.add_(lt(np.zeros((4, 2, 3))))


# ================================================================================================
# reductions
# ================================================================================================
def _np_lse(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis) if axis is not None else out.reshape(())


def _np_softmax(x, axis):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def _np_vnorm(x, p, axis, keepdims):
    if p == math.inf:
        return np.max(np.abs(x), axis=axis, keepdims=keepdims)
    return np.sum(np.abs(x) ** p, axis=axis, keepdims=keepdims) ** (1 / p)


def _tdim(dim, x):
    return tuple(range(x.ndim)) if dim is None else dim


# name: (luban fn(x, dim, keepdim), torch fn(x, dim, keepdim), numpy ref(x, dim, keepdim), dims, flags)
# flags: "ties" = non-differentiable at ties (no expanded inputs); "nokeep" = no keepdim arg
RED_DIMS = [None, 0, -1, (0, 2), (-1, 1)]
INT_DIMS = [None, 0, -1, 1]
ONLY_INT = [0, -1, 1]


def _np_argfirst(fn):
    def ref(x, dim, keep):
        if dim is None:
            r = fn(x.reshape(-1))
            return np.reshape(r, (1,) * x.ndim) if keep else np.asarray(r)
        return fn(x, axis=dim, keepdims=keep)
    return ref


REDUCTIONS = {
    "sum": (lambda x, d, k: x.sum(d, keepdim=k), lambda x, d, k: x.sum(_tdim(d, x), keepdim=k),
            lambda x, d, k: np.sum(x, axis=d, keepdims=k), RED_DIMS, ""),
    "mean": (lambda x, d, k: x.mean(d, keepdim=k), lambda x, d, k: x.mean(_tdim(d, x), keepdim=k),
             lambda x, d, k: np.mean(x, axis=d, keepdims=k), RED_DIMS, ""),
    "amax": (lambda x, d, k: x.amax(d, keepdim=k), lambda x, d, k: x.amax(_tdim(d, x), keepdim=k),
             lambda x, d, k: np.max(x, axis=d, keepdims=k), RED_DIMS, "ties"),
    "amin": (lambda x, d, k: x.amin(d, keepdim=k), lambda x, d, k: x.amin(_tdim(d, x), keepdim=k),
             lambda x, d, k: np.min(x, axis=d, keepdims=k), RED_DIMS, "ties"),
    "max_dim": (lambda x, d, k: tuple(x.max(d, keepdim=k)), lambda x, d, k: tuple(x.max(d, keepdim=k)),
                lambda x, d, k: (np.max(x, axis=d, keepdims=k), np.argmax(x, axis=d, keepdims=k)), ONLY_INT, "ties"),
    "min_dim": (lambda x, d, k: tuple(x.min(d, keepdim=k)), lambda x, d, k: tuple(x.min(d, keepdim=k)),
                lambda x, d, k: (np.min(x, axis=d, keepdims=k), np.argmin(x, axis=d, keepdims=k)), ONLY_INT, "ties"),
    "argmax": (lambda x, d, k: x.argmax(d, keepdim=k), lambda x, d, k: x.argmax(d, keepdim=k),
               _np_argfirst(np.argmax), INT_DIMS, "ties"),
    "argmin": (lambda x, d, k: x.argmin(d, keepdim=k), lambda x, d, k: x.argmin(d, keepdim=k),
               _np_argfirst(np.argmin), INT_DIMS, "ties"),
    "prod": (lambda x, d, k: x.prod(d, keepdim=k) if d is not None or k else x.prod(),
             lambda x, d, k: x.prod(d, keepdim=k) if d is not None else x.prod().reshape((1,) * x.ndim if k else ()),
             lambda x, d, k: np.prod(x, axis=d, keepdims=k), INT_DIMS, ""),
    "var": (lambda x, d, k: x.var(d, keepdim=k), lambda x, d, k: x.var(_tdim(d, x), keepdim=k),
            lambda x, d, k: np.var(x, axis=d, keepdims=k, ddof=1), RED_DIMS, ""),
    "var_c0": (lambda x, d, k: x.var(d, keepdim=k, correction=0),
               lambda x, d, k: x.var(_tdim(d, x), keepdim=k, correction=0),
               lambda x, d, k: np.var(x, axis=d, keepdims=k), RED_DIMS, ""),
    "var_biased": (lambda x, d, k: x.var(d, unbiased=False, keepdim=k),
                   lambda x, d, k: x.var(_tdim(d, x), unbiased=False, keepdim=k),
                   lambda x, d, k: np.var(x, axis=d, keepdims=k), RED_DIMS, ""),
    "std": (lambda x, d, k: x.std(d, keepdim=k), lambda x, d, k: x.std(_tdim(d, x), keepdim=k),
            lambda x, d, k: np.std(x, axis=d, keepdims=k, ddof=1), RED_DIMS, "ties"),
    "std_c0": (lambda x, d, k: x.std(d, keepdim=k, correction=0),
               lambda x, d, k: x.std(_tdim(d, x), keepdim=k, correction=0),
               lambda x, d, k: np.std(x, axis=d, keepdims=k), RED_DIMS, "ties"),
    "logsumexp": (lambda x, d, k: x.logsumexp(d, keepdim=k), lambda x, d, k: x.logsumexp(_tdim(d, x), keepdim=k),
                  _np_lse, RED_DIMS, ""),
    "softmax": (lambda x, d, k: x.softmax(d), lambda x, d, k: x.softmax(d),
                lambda x, d, k: _np_softmax(x, d), ONLY_INT, "nokeep"),
    "log_softmax": (lambda x, d, k: x.log_softmax(d), lambda x, d, k: x.log_softmax(d),
                    lambda x, d, k: np.log(_np_softmax(x, d)), ONLY_INT, "nokeep"),
    "cumsum": (lambda x, d, k: x.cumsum(d), lambda x, d, k: x.cumsum(d),
               lambda x, d, k: np.cumsum(x, axis=d), ONLY_INT, "nokeep"),
    "cumprod": (lambda x, d, k: x.cumprod(d), lambda x, d, k: x.cumprod(d),
                lambda x, d, k: np.cumprod(x, axis=d), ONLY_INT, "nokeep"),
    "norm2": (lambda x, d, k: x.norm(2, d, keepdim=k),
              lambda x, d, k: torch.linalg.vector_norm(x, 2, d, keepdim=k),
              lambda x, d, k: _np_vnorm(x, 2, d, k), RED_DIMS, ""),
    "norm1": (lambda x, d, k: x.norm(1, d, keepdim=k),
              lambda x, d, k: torch.linalg.vector_norm(x, 1, d, keepdim=k),
              lambda x, d, k: _np_vnorm(x, 1, d, k), RED_DIMS, ""),
    "norm3": (lambda x, d, k: x.norm(3, d, keepdim=k),
              lambda x, d, k: torch.linalg.vector_norm(x, 3, d, keepdim=k),
              lambda x, d, k: _np_vnorm(x, 3, d, k), RED_DIMS, ""),
    "norm_inf": (lambda x, d, k: x.norm(math.inf, d, keepdim=k),
                 lambda x, d, k: torch.linalg.vector_norm(x, math.inf, d, keepdim=k),
                 lambda x, d, k: _np_vnorm(x, math.inf, d, k), RED_DIMS, "ties"),
}

RED_CASES = [(name, dim, keep) for name, spec in REDUCTIONS.items() for dim in spec[3]
             for keep in ((False,) if "nokeep" in spec[4] else (False, True))]


def _red_id(c):
    return f"{c[0]}-dim{c[1]}-keep{int(c[2])}".replace(" ", "")


@pytest.mark.parametrize("case", RED_CASES, ids=[_red_id(c) for c in RED_CASES])
def test_reduction(case, device):
    name, dim, keep = case
    lfn, tfn, ref, _, flags = REDUCTIONS[name]
    rng = rng_for("red", name, dim, keep)
    shape = random_shape(rng, ndim=3, p_one=0.3)
    if name.startswith(("var", "std")):  # at least 2 elements per group (1 is degenerate: see test_var_std_edge)
        axes = range(3) if dim is None else [d % 3 for d in (dim if isinstance(dim, tuple) else (dim,))]
        if math.prod(shape[d] for d in axes) < 2:
            shape = tuple(3 if i == min(axes) else s for i, s in enumerate(shape))
    kinds = ["contig", "permuted", "sliced"] + ([] if "ties" in flags else ["expanded"])
    v = View(kinds[int(rng.integers(len(kinds)))], shape, rng)
    base = rng.uniform(-2, 2, v.base_shape)
    if name.startswith("norm"):
        base = _dom_nonzero(rng, v.base_shape)
    if name in ("prod", "cumprod"):
        base = _dom_nonzero(rng, v.base_shape) * 0.8 + np.sign(base) * 0.3
    b32 = base.astype(np.float32)
    got = lfn(v.apply(lt(b32)), dim, keep)
    exp = ref(v.np_apply(b32.astype(np.float64)), dim, keep)
    for g, e in zip(got if isinstance(got, tuple) else [got], exp if isinstance(exp, tuple) else [exp]):
        assert_close(g, np.asarray(e), rtol=1e-5, atol=1e-5, what=f"{name} {v} dim={dim} keepdim={keep}")
        if not name.startswith("arg") and (name[-4:] != "_dim" or g is got[0]):
            assert g.dtype is luban.float32, g.dtype
        else:
            assert g.dtype is luban.int64, g.dtype
    if name.startswith("arg"):
        compare_torch(lambda x: lfn(v.apply(x), dim, keep), lambda x: tfn(v.apply(x), dim, keep), base,
                      device=device, grad=False)
        return
    if name in ("max_dim", "min_dim"):
        fd = (lambda x: lfn(v.apply(x), dim, keep)[0])
        ref_fd = (lambda x: ref(v.np_apply(x), dim, keep)[0])
    else:
        fd, ref_fd = (lambda x: lfn(v.apply(x), dim, keep)), (lambda x: ref(v.np_apply(x), dim, keep))
    check_grad(fd, base, device=device, ref=ref_fd, max_coords=24)
    compare_torch(lambda x: lfn(v.apply(x), dim, keep), lambda x: tfn(v.apply(x), dim, keep), base, device=device)


@needs_torch
@pytest.mark.parametrize("dtype", ["int64", "int32", "uint8", "bool", "float16", "bfloat16"])
def test_reduction_dtypes(dtype, device):
    a = np.array([[1, 0, 3, 1], [2, 1, 0, 1], [1, 1, 1, 0]]).astype(dtype if dtype != "bfloat16" else "float32")
    x = lt(a).to(dtype)
    tx = torch.tensor(a).to(getattr(torch, dtype))
    fns = {"sum": lambda t: t.sum(), "sum0": lambda t: t.sum(0), "sum_keep": lambda t: t.sum(1, keepdim=True),
           "amax": lambda t: t.amax(1), "amin": lambda t: t.amin(0),
           "max": lambda t: t.max(), "min": lambda t: t.min(),
           "all": lambda t: t.all(), "any1": lambda t: t.any(1), "all0": lambda t: t.all(0),
           "cumsum": lambda t: t.cumsum(1)}
    if dtype != "bool":  # torch has no argmax/argmin/max(dim)/prod for bool
        fns.update(prod1=lambda t: t.prod(1), argmax=lambda t: t.argmax(1), argmin=lambda t: t.argmin(0),
                   max_dim_values=lambda t: t.max(1)[0], max_dim_indices=lambda t: t.max(1)[1])
    if dtype in ("float16", "bfloat16"):
        fns.update(mean=lambda t: t.mean(), softmax=lambda t: t.softmax(1), var=lambda t: t.var(1))
    errors = []
    for name, fn in fns.items():
        try:
            assert_close(fn(x), fn(tx), rtol=1e-2, atol=1e-2, what=f"{name} on {dtype}", check_dtype=True)
        except AssertionError as e:
            errors.append(f"{name}: {' '.join(str(e).split())[:400]}")
    assert not errors, "\n".join(errors)


def test_mean_of_int_raises(device):
    with pytest.raises(RuntimeError):
        lt(np.array([1, 2, 3])).mean()


@needs_torch
def test_argmax_argmin_first_occurrence(device):
    a = np.array([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, 5.0], [-1.0, -4.0, 0.0, -4.0]])
    chk = Checks()
    fns = {"argmax(1)": lambda t: t.argmax(1), "argmin(1)": lambda t: t.argmin(1), "argmax(0)": lambda t: t.argmax(0),
           "argmin(0)": lambda t: t.argmin(0), "argmax()": lambda t: t.argmax(), "argmin()": lambda t: t.argmin(),
           "max(1)[1]": lambda t: t.max(1)[1], "min(1)[1]": lambda t: t.min(1)[1],
           "argmax(1, keepdim)": lambda t: t.argmax(1, keepdim=True)}
    for name, fn in fns.items():
        chk(f"{name} float", compare_torch, fn, fn, a, device=device, grad=False)
        chk(f"{name} int64", compare_torch, fn, fn, a.astype(np.int64), device=device, grad=False)
    chk.done()
    # the same on an expanded view (every element tied along the expanded dim)
    compare_torch(lambda t: t.expand(3, 4).argmax(0), lambda t: t.expand(3, 4).argmax(0), a[:1], device=device,
                  grad=False)


@needs_torch
def test_reductions_with_nan(device):
    a = np.array([[1.0, np.nan, 3.0], [2.0, 5.0, -1.0]])
    chk = Checks()
    fns = {"amax(1)": lambda t: t.amax(1), "amin(1)": lambda t: t.amin(1), "max()": lambda t: t.max(),
           "sum(1)": lambda t: t.sum(1), "argmax(1)": lambda t: t.argmax(1), "argmin(1)": lambda t: t.argmin(1),
           "max(1)[0]": lambda t: t.max(1)[0], "logsumexp(1)": lambda t: t.logsumexp(1),
           "softmax(1)": lambda t: t.softmax(1)}
    for name, fn in fns.items():
        for dt in ("float32", "float64"):
            chk(f"{name} {dt} with nan", compare_torch, fn, fn, a, dtype=dt, device=device, grad=False)
    chk.done()


@needs_torch
def test_max_ties_gradients(device):
    """amax / max() split the gradient evenly among ties; max(dim) sends it to the returned index."""
    a = np.array([[1.0, 3.0, 3.0, 2.0], [4.0, 4.0, 4.0, 0.0]])
    chk = Checks()
    fns = {"amax(1)": lambda t: t.amax(1), "amin(1)": lambda t: t.amin(1), "amax()": lambda t: t.amax(),
           "max()": lambda t: t.max(), "min()": lambda t: t.min(),
           "amax((0, 1), keepdim)": lambda t: t.amax((0, 1), keepdim=True),
           "max(1).values": lambda t: t.max(1)[0], "min(1).values": lambda t: t.min(1).values}
    for name, fn in fns.items():
        chk(f"{name} of {a.tolist()}", compare_torch, fn, fn, a, device=device)
        chk(f"{name} of {(-a).tolist()}", compare_torch, fn, fn, -a, device=device)
    chk.done()


@needs_torch
def test_prod_zeros_negatives(device):
    cases = [np.array([[2.0, 0.0, 3.0, -1.5], [0.0, 0.0, 2.0, 1.0], [-1.0, -2.0, 0.5, 4.0]]),
             np.array([[0.0, 1.5, -2.0]])]
    chk = Checks()
    fns = {"prod(1)": lambda t: t.prod(1), "prod(0)": lambda t: t.prod(0), "prod()": lambda t: t.prod(),
           "cumprod(1)": lambda t: t.cumprod(1), "cumprod(0)": lambda t: t.cumprod(0),
           "prod(-1, keepdim)": lambda t: t.prod(-1, keepdim=True)}
    for a in cases:
        for name, fn in fns.items():
            chk(f"{name} of {a.tolist()}", compare_torch, fn, fn, a, device=device)
    chk.done()


@needs_torch
def test_prod_cumsum_int_exact(device):
    a = np.array([[3] * 30 + [-1], [2] * 31], dtype=np.int64)
    assert lt(a).prod(1).tolist() == [-(3 ** 30), 2 ** 31]
    compare_torch(lambda t: t.prod(1), lambda t: t.prod(1), a, device=device, grad=False)
    a32 = np.array([[100000, 300000, -7]], dtype=np.int32)  # the product needs int64
    compare_torch(lambda t: t.prod(1), lambda t: t.prod(1), a32, device=device, grad=False)
    big = np.array([2 ** 40 + 1, 2 ** 40 + 3, -5, 7], dtype=np.int64)
    compare_torch(lambda t: t.cumsum(0), lambda t: t.cumsum(0), big, device=device, grad=False)
    compare_torch(lambda t: t.sum(), lambda t: t.sum(), big, device=device, grad=False)
    i8 = np.array([100, 100, 100, -7], dtype=np.int8)  # sums of small ints widen to int64
    compare_torch(lambda t: t.sum(), lambda t: t.sum(), i8, device=device, grad=False)
    compare_torch(lambda t: t.cumsum(0), lambda t: t.cumsum(0), i8, device=device, grad=False)


@needs_torch
def test_logsumexp_extremes(device):
    a = np.array([[1000.0, 1000.0, -1000.0], [-1000.0, -1000.0, -1000.0], [-np.inf, -np.inf, -np.inf],
                  [-np.inf, 0.0, 1.0]])
    chk = Checks()
    for dt in ("float32", "float64"):
        chk(f"logsumexp(1) {dt} with +-1000 and -inf", compare_torch, lambda t: t.logsumexp(1),
            lambda t: t.logsumexp(1), a, dtype=dt, device=device, grad=False, rtol=1e-6)
    fin = a[:2]
    for dt in ("float32", "float64"):
        for name in ("logsumexp", "softmax", "log_softmax"):
            for d in (0, 1):
                chk(f"{name}({d}) {dt} of {fin.tolist()}", compare_torch, lambda t: getattr(t, name)(d),
                    lambda t: getattr(t, name)(d), fin, dtype=dt, device=device)
    chk.done()


@needs_torch
def test_var_std_edge(device):
    a = np.array([[1.0, 2.0, 4.0, 7.0]])
    chk = Checks()
    fns = {"var()": lambda t: t.var(), "std()": lambda t: t.std(),
           "var(1, correction=2)": lambda t: t.var(1, correction=2),
           "std(0) (one element: nan)": lambda t: t.std(0), "var(0, correction=0)": lambda t: t.var(0, correction=0),
           "std(unbiased=False)": lambda t: t.std(unbiased=False)}
    for name, fn in fns.items():
        chk(name, compare_torch, fn, fn, a, device=device, grad=False)
    # std of constant data is 0: torch's gradient is 0 there (not nan)
    c = np.array([[2.0, 2.0, 2.0], [1.0, 2.0, 4.0]])
    chk("grad of std(1, correction=0) with a constant row", compare_torch, lambda t: t.std(1, correction=0),
        lambda t: t.std(1, correction=0), c, device=device)
    chk("grad of std(1) with a constant row", compare_torch, lambda t: t.std(1), lambda t: t.std(1), c, device=device)
    chk.done()


@needs_torch
def test_norm_at_zero_grad(device):
    z = np.zeros((2, 3))
    compare_torch(lambda t: t.norm(), lambda t: t.norm(), z, device=device)
    compare_torch(lambda t: t.norm(dim=1), lambda t: t.norm(dim=1), np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]]),
                  device=device)


def test_all_any(device):
    a = np.array([[[True, False, True], [True, True, True]], [[False, False, False], [True, False, True]]])
    for dim in (None, 0, -1, 1, (0, 2), (0, 1, 2)):
        for keep in (False, True):
            got_all, got_any = lt(a).all(dim, keepdim=keep), lt(a).any(dim, keepdim=keep)
            assert got_all.dtype is luban.bool and got_any.dtype is luban.bool
            assert_close(got_all, np.all(a, axis=dim, keepdims=keep), what=f"all dim={dim} keep={keep}")
            assert_close(got_any, np.any(a, axis=dim, keepdims=keep), what=f"any dim={dim} keep={keep}")
    f = np.array([[0.0, 2.0], [np.nan, 0.0], [0.0, 0.0]])
    assert_close(lt(f).all(1), np.all(f, axis=1))
    assert_close(lt(f).any(1), np.any(f, axis=1))
    i = np.array([[3, 0], [1, 1]], dtype=np.int32)
    assert_close(lt(i).all(0), np.all(i, axis=0))
    assert_close(lt(i).any(), np.any(i))
    # on a permuted, expanded view
    x = lt(a[:, :1]).expand(2, 4, 3).permute(2, 0, 1)
    assert_close(x.all(-1), np.all(np.broadcast_to(a[:, :1], (2, 4, 3)).transpose(2, 0, 1), axis=-1))


def test_reduction_free_functions(device):
    a = rng_for("freefn").standard_normal((2, 3)).astype(np.float32)
    x = lt(a)
    assert_close(luban.sum(x, 1), a.sum(1))
    assert_close(luban.mean(x), a.mean())
    assert_close(luban.amax(x, 0), a.max(0))
    assert_close(luban.max(x), a.max())
    assert_close(luban.max(x, 1)[0], a.max(1))
    assert_close(luban.max(x, 1).values, a.max(1))
    assert_close(luban.min(x, 1).indices, a.argmin(1))
    assert_close(luban.softmax(x, 1), _np_softmax(a.astype(np.float64), 1))
    assert_close(luban.max(x, lt(np.zeros((2, 3), dtype=np.float32))), np.maximum(a, 0))


# ================================================================================================
# shape ops
# ================================================================================================
def _np_repeat_interleave(a, r, dim):
    if dim is None:
        return np.repeat(a.reshape(-1), r)
    return np.repeat(a, r, axis=dim)


def _npsplit(a, size, dim):
    n = a.shape[dim]
    if isinstance(size, int):
        cuts = list(range(size, n, size))
    else:
        cuts = list(np.cumsum(size)[:-1])
    return tuple(np.split(a, cuts, axis=dim))


def _np_tri(a, k, lower):
    return np.tril(a, k) if lower else np.triu(a, k)


# id: (shape, fn on luban and torch tensors alike, numpy reference)
SHAPE_CASES = {
    "reshape_-1": ((2, 3, 4), lambda t: t.reshape(-1, 4), lambda a: a.reshape(-1, 4)),
    "reshape_tuple": ((2, 3, 4), lambda t: t.reshape((4, 1, 6)), lambda a: a.reshape(4, 1, 6)),
    "reshape_flat": ((2, 3, 4), lambda t: t.reshape(-1), lambda a: a.reshape(-1)),
    "reshape_0d": ((1, 1), lambda t: t.reshape(()), lambda a: a.reshape(())),
    "view": ((2, 6), lambda t: t.view(3, -1, 2), lambda a: a.reshape(3, -1, 2)),
    "reshape_of_permuted": ((2, 3, 4), lambda t: t.permute(2, 0, 1).reshape(4, 6),
                            lambda a: a.transpose(2, 0, 1).reshape(4, 6)),
    "reshape_of_sliced": ((4, 6), lambda t: t.narrow(1, 1, 4).reshape(2, 8), lambda a: a[:, 1:5].reshape(2, 8)),
    "permute": ((2, 3, 4), lambda t: t.permute(2, 0, 1), lambda a: a.transpose(2, 0, 1)),
    "permute_neg": ((2, 3, 4), lambda t: t.permute(-1, -3, -2), lambda a: a.transpose(2, 0, 1)),
    "transpose": ((2, 3, 4), lambda t: t.transpose(0, 2), lambda a: a.swapaxes(0, 2)),
    "transpose_neg": ((2, 3, 4), lambda t: t.transpose(-1, -2), lambda a: a.swapaxes(-1, -2)),
    "T": ((3, 4), lambda t: t.T, lambda a: a.T),
    "t": ((3, 4), lambda t: t.t(), lambda a: a.T),
    "mT": ((2, 3, 4), lambda t: t.mT, lambda a: a.swapaxes(-1, -2)),
    "expand": ((3, 1), lambda t: t.expand(2, 3, 4), lambda a: np.broadcast_to(a, (2, 3, 4))),
    "expand_-1": ((3, 1), lambda t: t.expand(-1, 5), lambda a: np.broadcast_to(a, (3, 5))),
    "expand_as": ((1, 4), lambda t: t.expand_as(_mod(t).zeros(3, 4, dtype=t.dtype)),
                  lambda a: np.broadcast_to(a, (3, 4))),
    "broadcast_to": ((4,), lambda t: t.broadcast_to((2, 3, 4)), lambda a: np.broadcast_to(a, (2, 3, 4))),
    "squeeze_all": ((1, 3, 1, 2), lambda t: t.squeeze(), lambda a: a.squeeze()),
    "squeeze_int": ((1, 3, 1, 2), lambda t: t.squeeze(2), lambda a: a.squeeze(2)),
    "squeeze_neg": ((3, 2, 1), lambda t: t.squeeze(-1), lambda a: a.squeeze(-1)),
    "squeeze_nonone": ((1, 3, 1, 2), lambda t: t.squeeze(1), lambda a: a),
    "squeeze_tuple": ((1, 3, 1, 2), lambda t: t.squeeze((0, 2)), lambda a: a.squeeze((0, 2))),
    "squeeze_tuple_mixed": ((1, 3, 1, 2), lambda t: t.squeeze((0, 1)), lambda a: a.squeeze(0)),
    "unsqueeze0": ((2, 3), lambda t: t.unsqueeze(0), lambda a: a[None]),
    "unsqueeze_neg1": ((2, 3), lambda t: t.unsqueeze(-1), lambda a: a[..., None]),
    "unsqueeze_neg2": ((2, 3), lambda t: t.unsqueeze(-2), lambda a: a[:, None, :]),
    "unsqueeze_mid": ((2, 3), lambda t: t.unsqueeze(1), lambda a: a[:, None, :]),
    "flatten": ((2, 3, 4), lambda t: t.flatten(), lambda a: a.reshape(-1)),
    "flatten_range": ((2, 3, 4, 1), lambda t: t.flatten(1, 2), lambda a: a.reshape(2, 12, 1)),
    "flatten_neg": ((2, 3, 4), lambda t: t.flatten(-2), lambda a: a.reshape(2, 12)),
    "unflatten": ((2, 12), lambda t: t.unflatten(1, (3, 4)), lambda a: a.reshape(2, 3, 4)),
    "unflatten_-1": ((2, 12), lambda t: t.unflatten(-1, (2, -1)), lambda a: a.reshape(2, 2, 6)),
    "flip0": ((3, 4), lambda t: t.flip(0), lambda a: a[::-1]),
    "flip_multi": ((2, 3, 4), lambda t: t.flip((0, 2)), lambda a: a[::-1, :, ::-1]),
    "flip_neg": ((2, 3, 4), lambda t: t.flip(-1), lambda a: a[..., ::-1]),
    "flip_permuted": ((2, 3, 4), lambda t: t.permute(1, 2, 0).flip(1), lambda a: a.transpose(1, 2, 0)[:, ::-1]),
    "repeat": ((2, 3), lambda t: t.repeat(2, 3), lambda a: np.tile(a, (2, 3))),
    "repeat_newdims": ((2, 3), lambda t: t.repeat(2, 1, 2), lambda a: np.tile(a, (2, 1, 2))),
    "repeat_ones": ((1, 3), lambda t: t.repeat(4, 1), lambda a: np.tile(a, (4, 1))),
    "repeat_interleave": ((2, 3), lambda t: t.repeat_interleave(2, dim=1), lambda a: np.repeat(a, 2, axis=1)),
    "repeat_interleave0": ((2, 3), lambda t: t.repeat_interleave(3, dim=0), lambda a: np.repeat(a, 3, axis=0)),
    "repeat_interleave_flat": ((2, 3), lambda t: t.repeat_interleave(2), lambda a: np.repeat(a.reshape(-1), 2)),
    "repeat_interleave_neg": ((2, 3), lambda t: t.repeat_interleave(2, dim=-1), lambda a: np.repeat(a, 2, axis=-1)),
    "split_int": ((7, 2), lambda t: t.split(3), lambda a: _npsplit(a, 3, 0)),
    "split_list": ((2, 7), lambda t: t.split([2, 4, 1], dim=1), lambda a: _npsplit(a, [2, 4, 1], 1)),
    "split_neg": ((2, 5), lambda t: t.split(2, dim=-1), lambda a: _npsplit(a, 2, 1)),
    "chunk": ((7, 2), lambda t: t.chunk(3), lambda a: _npsplit(a, 3, 0)),
    "chunk_even": ((2, 6), lambda t: t.chunk(3, dim=1), lambda a: _npsplit(a, 2, 1)),
    "chunk_6_by_4": ((6,), lambda t: t.chunk(4), lambda a: _npsplit(a, 2, 0)),
    "unbind": ((3, 2), lambda t: t.unbind(), lambda a: tuple(a)),
    "unbind1": ((3, 2, 2), lambda t: t.unbind(1), lambda a: tuple(a[:, i] for i in range(2))),
    "narrow": ((5, 4), lambda t: t.narrow(0, 1, 3), lambda a: a[1:4]),
    "narrow_neg_dim": ((5, 4), lambda t: t.narrow(-1, 2, 2), lambda a: a[:, 2:4]),
    "narrow_neg_start": ((5, 4), lambda t: t.narrow(0, -2, 2), lambda a: a[3:5]),
    "narrow_empty": ((5, 4), lambda t: t.narrow(0, 2, 0), lambda a: a[2:2]),
    "tril": ((4, 5), lambda t: t.tril(), lambda a: np.tril(a)),
    "tril_1": ((4, 5), lambda t: t.tril(1), lambda a: np.tril(a, 1)),
    "tril_-2": ((4, 5), lambda t: t.tril(-2), lambda a: np.tril(a, -2)),
    "triu": ((4, 5), lambda t: t.triu(), lambda a: np.triu(a)),
    "triu_2": ((4, 5), lambda t: t.triu(2), lambda a: np.triu(a, 2)),
    "triu_-1_batched": ((2, 3, 4), lambda t: t.triu(-1), lambda a: np.triu(a, -1)),
    "tril_batched_permuted": ((3, 2, 4), lambda t: t.permute(1, 0, 2).tril(), lambda a: np.tril(a.transpose(1, 0, 2))),
    "movedim": ((2, 3, 4), lambda t: t.movedim(0, 2), lambda a: np.moveaxis(a, 0, 2)),
    "movedim_neg": ((2, 3, 4), lambda t: t.movedim(-1, 0), lambda a: np.moveaxis(a, -1, 0)),
    "moveaxis": ((2, 3, 4), lambda t: t.moveaxis(1, -1), lambda a: np.moveaxis(a, 1, -1)),
    "contiguous_of_permuted": ((2, 3), lambda t: t.T.contiguous(), lambda a: a.T),
    "clone": ((2, 3), lambda t: t.clone(), lambda a: a),
    "cat_self": ((2, 3), lambda t: _mod(t).cat([t, t * 2], 1), lambda a: np.concatenate([a, a * 2], 1)),
    "cat_dim0_views": ((2, 3), lambda t: _mod(t).cat([t, t.flip(0), t.narrow(0, 0, 1)], 0),
                       lambda a: np.concatenate([a, a[::-1], a[:1]], 0)),
    "cat_neg": ((2, 3), lambda t: _mod(t).cat([t.T, t.T], -1), lambda a: np.concatenate([a.T, a.T], -1)),
    "stack": ((2, 3), lambda t: _mod(t).stack([t, t + 1, t * 3]), lambda a: np.stack([a, a + 1, a * 3])),
    "stack_dim": ((2, 3), lambda t: _mod(t).stack([t, -t], dim=2), lambda a: np.stack([a, -a], axis=2)),
    "stack_neg": ((2, 3), lambda t: _mod(t).stack([t, t.flip(1)], dim=-2), lambda a: np.stack([a, a[:, ::-1]], -2)),
}


def _mod(t):
    """luban or torch, whichever `t` belongs to (for free functions like cat/stack)."""
    return luban if isinstance(t, luban.Tensor) else torch


@pytest.mark.parametrize("case", list(SHAPE_CASES))
def test_shape_op(case, device):
    shape, fn, ref = SHAPE_CASES[case]
    rng = rng_for("shape", case)
    a = rng.standard_normal(shape)
    got, exp = fn(lt(a.astype(np.float32))), ref(a.astype(np.float32))
    gots, exps = (got, exp) if isinstance(exp, tuple) else ((got,), (exp,))
    assert isinstance(got, tuple) == isinstance(exp, tuple)
    assert len(gots) == len(exps), f"{len(gots)} outputs, expected {len(exps)}"
    for g, e in zip(gots, exps):
        assert g.dtype is luban.float32
        assert_close(g, np.array(e), rtol=0, atol=0)
    # int64 data moves exactly too
    ai = rng.integers(-100, 100, shape)
    for g, e in zip(*((fn(lt(ai)), ref(ai)) if isinstance(exp, tuple) else ((fn(lt(ai)),), (ref(ai),)))):
        assert g.dtype is luban.int64
        assert_close(g, np.array(e))
    if all(g.numel() for g in gots):
        check_grad(fn, a, device=device, ref=lambda x: ref(x), max_coords=24)
    compare_torch(fn, fn, a, device=device)


def test_shape_sizes_and_metadata(device):
    x = lt(np.zeros((2, 3, 4), dtype=np.float32))
    assert x.shape == (2, 3, 4) and isinstance(x.shape, tuple)
    assert x.size() == (2, 3, 4) and x.size(1) == 3 and x.size(-1) == 4
    assert x.ndim == 3 and x.dim() == 3 and x.numel() == 24 and len(x) == 2
    assert x.element_size() == 4
    assert x.reshape(-1).shape == (24,)
    assert x.permute(2, 0, 1).shape == (4, 2, 3)
    assert x.unsqueeze(-1).shape == (2, 3, 4, 1)
    assert luban.zeros(1, 1).squeeze().shape == ()
    assert luban.zeros(()).unsqueeze(0).shape == (1,)
    assert luban.zeros(()).flatten().shape == (1,)


def test_shape_errors(device):
    x = lt(np.zeros((2, 3, 4), dtype=np.float32))
    with pytest.raises(RuntimeError, match="invalid for input of size 24"):
        x.reshape(5, -1)
    with pytest.raises(RuntimeError):
        x.reshape(-1, -1)
    with pytest.raises(RuntimeError):
        x.permute(0, 1)
    with pytest.raises(RuntimeError):
        x.permute(0, 1, 1)
    with pytest.raises(RuntimeError):
        x.expand(2, 5, 4)
    with pytest.raises(IndexError):
        x.transpose(0, 3)
    with pytest.raises(IndexError):
        x.unsqueeze(4)
    with pytest.raises(IndexError):
        x.sum(3)
    with pytest.raises(IndexError):
        x.narrow(0, 1, 5)
    with pytest.raises(RuntimeError):
        x.split([1, 1], dim=1)
    with pytest.raises(RuntimeError):
        lt(np.zeros(3)).tril()
    with pytest.raises(RuntimeError):
        x.repeat(2, 2)
    with pytest.raises(RuntimeError):
        x.flatten(2, 1)


# ================================================================================================
# errors
# ================================================================================================
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "maximum", "lt", "eq", "pow"])
def test_shape_mismatch_error_names_op_and_shapes(op, device):
    a, b = lt(np.ones((2, 3), dtype=np.float32)), lt(np.ones((2, 4), dtype=np.float32))
    fn = {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b, "div": lambda: a / b,
          "maximum": lambda: a.maximum(b), "lt": lambda: a < b, "eq": lambda: a == b, "pow": lambda: a ** b}[op]
    with pytest.raises(RuntimeError) as e:
        fn()
    msg = str(e.value)
    assert op in msg, msg
    assert "(2, 3)" in msg and "(2, 4)" in msg, msg


def test_where_shape_mismatch(device):
    with pytest.raises(RuntimeError, match="where"):
        luban.where(lt(np.ones((2, 3)) > 0), lt(np.ones((2, 4))), 0.0)


def test_mixed_devices_raise():
    if not cpu_device_available():
        pytest.skip("cpu device not available")
    a = luban.tensor([1.0, 2.0], device="numpy")
    b = luban.tensor([1.0, 2.0], device="cpu")
    for fn in (lambda: a + b, lambda: b * a, lambda: a.maximum(b), lambda: luban.where(a > 0, a, b),
               lambda: a < b):
        with pytest.raises(RuntimeError) as e:
            fn()
        assert "numpy" in str(e.value) and "cpu" in str(e.value), str(e.value)
    # an explicit move works
    assert_close(a + b.to("numpy"), np.array([2.0, 4.0]))


def test_bad_operand_type(device):
    with pytest.raises(TypeError):
        lt(np.ones(2)) + "a"
    with pytest.raises(TypeError):
        lt(np.ones(2)) * [1, 2]  # lists are not operands (torch raises TypeError too)
