"""dtypes: defaults, conversions and PyTorch's type promotion, checked against PyTorch."""
from __future__ import annotations

import numpy as np
import pytest

import luban
from helpers import Checks, assert_close, dtype_name, lt, torch

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed")

# the dtypes torch supports fully (uint16/uint32 have only partial support in torch)
DTYPES = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16", "float32", "float64"]


def _sample(dtype: str) -> np.ndarray:
    """Small nonzero values every dtype holds exactly (nonzero: integer // and % by 0 raise in torch)."""
    if dtype == "bool":
        return np.array([[True, True, True], [True, True, True]])
    vals = np.array([[3, 1, 5], [1, 2, 7]])
    return vals.astype(np.float32 if dtype == "bfloat16" else dtype)


def _lux(dtype: str, shape_0d: bool = False):
    a = _sample(dtype)
    if shape_0d:
        a = a.reshape(-1)[1 if dtype != "bool" else 0].reshape(())
        a = np.array(a)
    return lt(a).to(dtype) if dtype == "bfloat16" else lt(a)


def _tx(dtype: str, shape_0d: bool = False):
    a = _sample(dtype)
    if shape_0d:
        a = np.array(a.reshape(-1)[1 if dtype != "bool" else 0].reshape(()))
    return torch.tensor(a).to(getattr(torch, dtype))


# ---- names, defaults ------------------------------------------------------------------------------
def test_dtype_objects_and_aliases():
    assert luban.float32.name == "float32" and luban.float32.itemsize == 4
    assert luban.half is luban.float16 and luban.float is luban.float32 and luban.double is luban.float64
    assert luban.long is luban.int64 and luban.int is luban.int32 and luban.short is luban.int16
    assert luban.bool.name == "bool" and luban.bool_ is luban.bool
    for name in DTYPES:
        d = getattr(luban, name)
        assert isinstance(d, luban.DType) and d.name == name
    assert luban.bfloat16.itemsize == 2 and luban.float16.itemsize == 2 and luban.int8.itemsize == 1
    assert luban.float32.is_float and luban.int8.is_int and luban.bool.is_bool and not luban.uint8.is_float


def test_default_dtypes(device):
    assert luban.tensor([1.0, 2.0]).dtype is luban.float32
    assert luban.tensor(1.5).dtype is luban.float32
    assert luban.tensor([1, 2]).dtype is luban.int64
    assert luban.tensor([True]).dtype is luban.bool
    assert luban.zeros(2).dtype is luban.float32
    assert luban.ones(2, 3).dtype is luban.float32
    assert luban.empty(2).dtype is luban.float32
    assert luban.rand(2).dtype is luban.float32
    assert luban.randn(2).dtype is luban.float32
    assert luban.arange(3).dtype is luban.int64
    assert luban.arange(0.0, 1.0, 0.5).dtype is luban.float32
    assert luban.linspace(0, 1, 3).dtype is luban.float32
    assert luban.eye(2).dtype is luban.float32
    assert luban.full((2,), 1.5).dtype is luban.float32
    assert luban.full((2,), 7).dtype is luban.int64
    assert luban.full((2,), False).dtype is luban.bool
    assert luban.randint(0, 5, (3,)).dtype is luban.int64


@pytest.mark.parametrize("spec", ["float64", "luban.float64", luban.float64, np.float64, np.dtype("float64"), "double"])
def test_dtype_specs_accepted(spec, device):
    assert luban.zeros(2, dtype=spec).dtype is luban.float64
    assert luban.tensor([1, 2], dtype=spec).dtype is luban.float64
    assert lt(np.ones(2, dtype=np.float32)).to(dtype=spec).dtype is luban.float64
    if not isinstance(spec, (type, np.dtype)):  # positional: luban dtypes and names (torch takes no NumPy types)
        assert lt(np.ones(2, dtype=np.float32)).to(spec).dtype is luban.float64


def test_python_types_as_dtypes(device):
    assert luban.zeros(2, dtype=float).dtype is luban.float32
    assert luban.zeros(2, dtype=int).dtype is luban.int64
    assert luban.zeros(2, dtype=bool).dtype is luban.bool


@pytest.mark.parametrize("bad", ["float33", "int", "flaot32", "complex64", "torch.float32x", ""])
def test_bad_dtype_names_raise_typeerror(bad, device):
    if bad == "int":  # "int" is a valid alias (int32), like torch.int
        assert luban.zeros(2, dtype="int").dtype is luban.int32
        return
    with pytest.raises(TypeError):
        luban.zeros(2, dtype=bad)
    with pytest.raises(TypeError):
        luban.tensor([1.0], dtype=bad)
    with pytest.raises(TypeError):
        lt(np.ones(2)).to(dtype=bad)
    with pytest.raises(TypeError):
        lt(np.ones(2)).cast(bad)


def test_unsupported_dtypes_raise_typeerror(device):
    with pytest.raises(TypeError):
        luban.zeros(2, dtype=np.complex64)
    with pytest.raises(TypeError):
        luban.tensor(np.array([1 + 2j]))
    with pytest.raises(TypeError):
        luban.tensor(["a", "b"])


# ---- conversions ------------------------------------------------------------------------------------
CONVERSIONS = {
    "float": ("float32", lambda t: t.float()), "double": ("float64", lambda t: t.double()),
    "half": ("float16", lambda t: t.half()), "bfloat16": ("bfloat16", lambda t: t.bfloat16()),
    "int": ("int32", lambda t: t.int()), "long": ("int64", lambda t: t.long()), "bool": ("bool", lambda t: t.bool()),
    "to_dtype": ("int16", lambda t: t.to(luban.int16) if isinstance(t, luban.Tensor) else t.to(torch.int16)),
    "to_kw": ("uint8", lambda t: t.to(dtype=luban.uint8) if isinstance(t, luban.Tensor) else t.to(dtype=torch.uint8)),
    "to_int8": ("int8", lambda t: t.to(luban.int8) if isinstance(t, luban.Tensor) else t.to(torch.int8)),
    "type": ("float64", lambda t: t.type(luban.float64) if isinstance(t, luban.Tensor) else t.type(torch.float64)),
}


@needs_torch
@pytest.mark.parametrize("src", ["float32", "float64", "float16", "bfloat16", "int64", "int32", "int8", "uint8",
                                 "bool"])
@pytest.mark.parametrize("conv", list(CONVERSIONS))
def test_conversion_methods(conv, src, device):
    target, fn = CONVERSIONS[conv]
    if src == "bool":
        a = np.array([True, False, True, True, False])
    elif src.startswith(("float", "bfloat")):
        # truncation toward zero on float -> int; no negatives for uint8, no overflow
        a = np.array([0.0, 0.4, 1.5, 2.7, 99.9, -0.6, -1.5, -2.7, -99.9])
        if target == "uint8":
            a = np.abs(a)
    elif src == "uint8":
        a = np.array([0, 1, 7, 100, 200])
    else:
        a = np.array([0, 1, -1, 7, -100, 100])
        if target == "uint8":
            a = np.abs(a)
    a = a.astype(np.float32 if src == "bfloat16" else src)
    x = lt(a).to(src)
    t = torch.tensor(a).to(getattr(torch, src))
    got, exp = fn(x), fn(t)
    assert got.dtype.name == target
    assert_close(got, exp, rtol=0, atol=0, check_dtype=True, what=f"{src} -> {target}")


@needs_torch
@pytest.mark.parametrize("target", ["float16", "bfloat16"])
def test_float_rounding_to_half_types(target, device):
    """Round to nearest even, overflow to inf, subnormals, nan: bit-exact against torch."""
    rng = np.random.default_rng(7)
    a = np.concatenate([rng.standard_normal(200).astype(np.float32) * 10,
                        np.array([1.00390625, 1.01171875, 1.0009765625, 1.0029296875, 65504.0, 65519.0, 65520.0,
                                  70000.0, -70000.0, 6e-8, 3e-8, 1e-5, 3e38, np.inf, -np.inf, np.nan, -0.0],
                                 dtype=np.float32)])
    for src in ("float32", "float64"):
        got = lt(a.astype(src)).to(target)
        exp = torch.tensor(a.astype(src)).to(getattr(torch, target))
        assert_close(got, exp, rtol=0, atol=0, what=f"{src} -> {target}")
        # and back up, exactly
        assert_close(got.float(), exp.float(), rtol=0, atol=0, what=f"{src} -> {target} -> float32")


@needs_torch
@pytest.mark.parametrize("src", DTYPES)
def test_cast_grid(src, device):
    """Every dtype to every dtype, values against torch."""
    a = _sample(src)
    x = lt(a).to(src)
    t = torch.tensor(a).to(getattr(torch, src))
    chk = Checks()
    for dst in DTYPES:
        chk(f"{src}->{dst}", assert_close, x.to(dst), t.to(getattr(torch, dst)), rtol=0, atol=0, check_dtype=True)
    chk.done()


def test_to_same_dtype_and_device(device):
    x = lt(np.ones(3, dtype=np.float32))
    assert x.to(luban.float32).dtype is luban.float32
    y = x.to(device)
    assert y.device == device
    assert x.to(lt(np.zeros(1, dtype=np.float64))).dtype is luban.float64
    z = x.to(device, luban.int32)
    assert z.dtype is luban.int32 and z.device == device
    assert x.float() is x or x.float().dtype is luban.float32


def test_is_floating_point_and_element_size(device):
    for name in DTYPES:
        x = luban.zeros(2, dtype=name)
        assert x.is_floating_point() == name.startswith(("float", "bfloat"))
        assert x.element_size() == np.dtype(getattr(luban, name).np).itemsize


def test_requires_grad_only_for_float(device):
    for name in DTYPES:
        if name.startswith(("float", "bfloat")):
            assert luban.zeros(2, dtype=name, requires_grad=True).requires_grad
        else:
            with pytest.raises(RuntimeError, match="floating point"):
                luban.zeros(2, dtype=name, requires_grad=True)


# ---- promotion ----------------------------------------------------------------------------------
BINOPS = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b, "div": lambda a, b: a / b,
    "floordiv": lambda a, b: a // b, "mod": lambda a, b: a % b, "maximum": lambda a, b: a.maximum(b),
    "lt": lambda a, b: a < b, "eq": lambda a, b: a == b, "where": None,
}


def _where(m):
    def fn(a, b):
        if m is luban:
            return luban.where(luban.tensor(True, device=a.device if isinstance(a, luban.Tensor) else None), a, b)
        return torch.where(torch.tensor(True), a, b)
    return fn


def _apply(op, mod, a, b):
    fn = _where(mod) if op == "where" else BINOPS[op]
    return fn(a, b)


def _outcome(fn):
    try:
        return fn()
    except (RuntimeError, TypeError, NotImplementedError, ValueError) as e:
        return e


def _check_promotion(op, la, lb, ta, tb, what):
    t_res = _outcome(lambda: _apply(op, torch, ta, tb))
    l_res = _outcome(lambda: _apply(op, luban, la, lb))
    if isinstance(t_res, NotImplementedError):  # torch lacks a kernel for this dtype: nothing to compare
        return None
    if isinstance(t_res, Exception):
        # torch refuses (bool - bool, ...): luban must refuse too
        assert isinstance(l_res, Exception), \
            f"{what}: torch raises {type(t_res).__name__}({str(t_res)[:50]!r}...), luban gives {l_res.dtype}"
        return None
    assert not isinstance(l_res, Exception), f"{what}: luban raises {l_res!r}, torch gives {t_res.dtype}"
    assert dtype_name(l_res.dtype) == dtype_name(t_res.dtype), \
        f"{what}: luban {dtype_name(l_res.dtype)}, torch {dtype_name(t_res.dtype)}"
    return l_res, t_res


@needs_torch
@pytest.mark.parametrize("op", list(BINOPS))
@pytest.mark.parametrize("kind", ["tensor-tensor", "tensor-0d", "0d-tensor", "0d-0d"])
def test_promotion_grid(op, kind, device):
    """Result dtype of op(a, b) for every pair of dtypes, against torch (no data is computed)."""
    errors = []
    for da in DTYPES:
        for db in DTYPES:
            a0, b0 = kind.startswith("0d"), kind.endswith("0d")
            try:
                _check_promotion(op, _lux(da, a0), _lux(db, b0), _tx(da, a0), _tx(db, b0), f"{op} {da} {db} ({kind})")
            except AssertionError as e:
                errors.append(str(e).splitlines()[0])
    assert not errors, f"{len(errors)} promotion mismatches:\n" + "\n".join(errors)


SCALARS = [True, False, 2, -3, 0, 2.5, -0.5]


@needs_torch
@pytest.mark.parametrize("op", [o for o in BINOPS if o != "maximum"])  # torch.maximum takes no scalars
def test_promotion_with_python_scalars(op, device):
    errors = []
    for d in DTYPES:
        for s in SCALARS:
            if op in ("div", "floordiv", "mod") and s in (0, False):
                continue
            for side in ("right", "left"):
                la, ta = _lux(d), _tx(d)
                if side == "right":
                    args = (la, s, ta, s)
                else:
                    if op in ("maximum",):
                        continue
                    args = (s, la, s, ta)
                try:
                    _check_promotion(op, *args, f"{op} {d} {s!r} ({side})")
                except AssertionError as e:
                    errors.append(str(e).splitlines()[0])
    assert not errors, f"{len(errors)} promotion mismatches:\n" + "\n".join(errors)


@needs_torch
@pytest.mark.parametrize("kind", ["tensor-tensor", "tensor-0d", "tensor-scalar"])
def test_promotion_values(kind, device):
    """Values too: the promotion must happen before the op (int8 100 + uint8 200 = int16 300)."""
    errors = []
    for da in DTYPES:
        for db in DTYPES if kind != "tensor-scalar" else [2, -3, 2.5, True]:
            for op in ("add", "mul", "div", "maximum", "lt", "where"):
                if kind == "tensor-scalar":
                    args = (_lux(da), db, _tx(da), db)
                    if op == "maximum":
                        continue
                else:
                    b0 = kind == "tensor-0d"
                    args = (_lux(da), _lux(db, b0), _tx(da), _tx(db, b0))
                try:
                    res = _check_promotion(op, *args, f"{op} {da} {db!r} ({kind})")
                    if res is not None:
                        tol = 1e-2 if dtype_name(res[1].dtype) in ("float16", "bfloat16") else 1e-6
                        assert_close(res[0], res[1], rtol=tol, atol=tol, what=f"{op} {da} {db!r} ({kind})")
                except AssertionError as e:
                    errors.append(" ".join(str(e).split())[:300])
    assert not errors, f"{len(errors)} mismatches:\n" + "\n".join(errors)


@needs_torch
def test_promotion_mixed_sign_overflow_values(device):
    a = np.array([100, -100, 127], dtype=np.int8)
    b = np.array([200, 255, 1], dtype=np.uint8)
    for op in ("add", "sub", "mul"):
        res = _check_promotion(op, lt(a), lt(b), torch.tensor(a), torch.tensor(b), op)
        assert_close(res[0], res[1], what=f"int8 {op} uint8")
    # int / int is true division in float32, also for int64 values beyond float32's exact range
    x, y = np.array([7, -7, 1, 2 ** 40], dtype=np.int64), np.array([2, 2, 3, 3], dtype=np.int64)
    res = _check_promotion("div", lt(x), lt(y), torch.tensor(x), torch.tensor(y), "int64 / int64")
    assert_close(res[0], res[1], rtol=1e-6, what="int64 / int64")
    # bool + bool is logical or, bool * bool logical and (dtype bool)
    p, q = np.array([True, True, False, False]), np.array([True, False, True, False])
    for op in ("add", "mul"):
        res = _check_promotion(op, lt(p), lt(q), torch.tensor(p), torch.tensor(q), f"bool {op} bool")
        assert_close(res[0], res[1], what=f"bool {op} bool")


@needs_torch
def test_int_true_division_and_0d_rules(device):
    i = lt(np.array([1, 2, 3]))
    assert (i / 2).dtype is luban.float32
    assert (i / lt(np.array([2, 2, 2]))).dtype is luban.float32
    assert (i / luban.tensor(2.0, dtype=luban.float64)).dtype is luban.float64  # 0-d of higher category wins
    f16 = lt(np.ones(3, dtype=np.float16))
    assert (f16 + luban.tensor(1.0, dtype=luban.float64)).dtype is luban.float16  # same category: dim tensor wins
    assert (f16 + 1.5).dtype is luban.float16
    assert (f16 + lt(np.ones(3, dtype=np.float32))).dtype is luban.float32
    assert (lt(np.ones(3, dtype=np.uint8)) + luban.tensor(-1)).dtype is luban.uint8
    assert (lt(np.ones(3, dtype=np.int8)) + 1000).dtype is luban.int8


@needs_torch
def test_scalar_operand_out_of_range_for_tensor_dtype(device):
    """A Python scalar only decides the result category; its value is not wrapped to the tensor's dtype."""
    u = np.array([3, 1, 200], dtype=np.uint8)
    i8 = np.array([3, -1, 100], dtype=np.int8)
    cases = {"t / -3": lambda t: t / -3, "t / 1000": lambda t: t / 1000, "t < -1": lambda t: t < -1,
             "t == 1000": lambda t: t == 1000, "t * 0.5": lambda t: t * 0.5, "t > 300.5": lambda t: t > 300.5,
             "-3 / t": lambda t: -3 / t,
             "where(t > 2, t, -1.5)": lambda t: luban.where(t > 2, t, -1.5) if isinstance(t, luban.Tensor)
             else torch.where(t > 2, t, -1.5)}
    errors = []
    for a in (u, i8):
        for name, fn in cases.items():
            got, exp = fn(lt(a)), fn(torch.tensor(a))
            try:
                assert_close(got, exp, rtol=1e-6, atol=1e-6, check_dtype=True)
            except AssertionError:
                errors.append(f"{name} for {a.dtype} {a.tolist()}: luban {got.tolist()} ({got.dtype}), "
                              f"torch {exp.tolist()}")
    assert not errors, "\n".join(errors)
