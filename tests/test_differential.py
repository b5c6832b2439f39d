"""Random elementwise expressions, then sometimes a reduction, on odd shapes: every
usable device against NumPy. Each fused kernel is compiled for its shape in its own way
(short rows unrolled, long ones split into vector and remainder loops; broadcasts,
selects and comparisons mixed), which fixed tests do not sweep. (The gcc 12 miscompile
of a comparison of a select, cstyle.SHORT_LOOP, needed a narrower pattern than these
draw; it has its own test in test_cpu_codegen.py.)"""
import numpy as np
import pytest

import luban

DIMS = (1, 2, 3, 5, 7, 8, 15, 16, 17, 33)
CASES = 60


def _shape(rng) -> tuple:
    return tuple(int(d) for d in rng.choice(DIMS, size=rng.integers(1, 5)))


def _leaf(rng, shape, arrays):
    """A random input: full shape, or broadcast along some dims (size 1 there)."""
    s = shape if rng.random() < 0.6 else tuple(d if rng.random() < 0.5 else 1 for d in shape)
    v = rng.standard_normal(s).astype(np.float32)
    v[rng.random(s) < 0.1] = 0.0  # exact zeros: ties and comparisons against 0
    arrays.append(v)
    return len(arrays) - 1


def _expr(rng, shape, arrays, depth):
    """A random expression tree: ("in", i), ("c", value) or (op, children...)."""
    if depth == 0 or rng.random() < 0.25:
        return ("c", float(rng.choice([0.0, 0.2, -1.5, 2.0]))) if rng.random() < 0.3 else ("in", _leaf(rng, shape, arrays))
    op = str(rng.choice(["add", "mul", "sub", "max", "min", "where", "neg", "abs", "clamp", "relu", "sigmoid"]))
    arity = {"neg": 1, "abs": 1, "clamp": 1, "relu": 1, "sigmoid": 1, "where": 4}.get(op, 2)
    kids = [_expr(rng, shape, arrays, depth - 1) for _ in range(arity)]
    if op == "where":  # where(cmp(a, b), c, d); half the time a is a select, b a constant
        if rng.random() < 0.5:  # (a ReLU's output tested for 0, a clamp against its bound)
            sel = str(rng.choice(["max", "min", "relu", "clamp"]))
            kids[0] = (sel, kids[0], ("c", 0.2)) if sel in ("max", "min") else (sel, kids[0])
            kids[1] = ("c", float(rng.choice([0.0, 0.2, 0.7])))
            kids[3] = ("c", 0.0)  # (a mask: the value where the test fails)
        kids.insert(0, str(rng.choice(["<", ">", "==", "!="])))
    return (op, *kids)


def _eval(e, leaves, lib):
    """The expression over luban tensors (lib=luban) or NumPy arrays (lib=np)."""
    kind = e[0]
    if kind == "in":
        return leaves[e[1]]
    if kind == "c":
        return np.float32(e[1])
    if kind == "where":
        a, b, c, d = (_eval(k, leaves, lib) for k in e[2:])
        cmp = {"<": lambda x, y: x < y, ">": lambda x, y: x > y, "==": lambda x, y: x == y,
               "!=": lambda x, y: x != y}[e[1]]
        cond = cmp(a, b)
        if lib is np:
            return np.where(cond, c, d).astype(np.float32)
        if not isinstance(cond, luban.Tensor):  # both sides constants
            cond = luban.tensor(np.asarray(cond))
        return luban.where(cond, c if isinstance(c, luban.Tensor) else float(c),
                           d if isinstance(d, luban.Tensor) else float(d))
    xs = [_eval(k, leaves, lib) for k in e[1:]]
    if lib is np:
        x = xs[0]
        out = {"add": lambda: x + xs[1], "mul": lambda: x * xs[1], "sub": lambda: x - xs[1],
               "max": lambda: np.maximum(x, xs[1]), "min": lambda: np.minimum(x, xs[1]), "neg": lambda: -x,
               "abs": lambda: np.abs(x), "clamp": lambda: np.clip(x, -0.5, 0.7), "relu": lambda: np.maximum(x, 0),
               "sigmoid": lambda: 1 / (1 + np.exp(-np.float64(x)))}[kind]()
        return np.asarray(out, dtype=np.float32)
    t = [x if isinstance(x, luban.Tensor) else luban.tensor(np.asarray(x, np.float32)) for x in xs]
    x = t[0]
    return {"add": lambda: x + t[1], "mul": lambda: x * t[1], "sub": lambda: x - t[1],
            "max": lambda: x.maximum(t[1]), "min": lambda: x.minimum(t[1]), "neg": lambda: -x,
            "abs": lambda: x.abs(), "clamp": lambda: x.clamp(-0.5, 0.7), "relu": lambda: x.relu(),
            "sigmoid": lambda: x.sigmoid()}[kind]()


@pytest.mark.parametrize("seed", range(CASES))
def test_random_expression_matches_numpy(device, seed):
    rng = np.random.default_rng(1000 + seed)
    shape = _shape(rng)
    arrays: list = []
    e = _expr(rng, shape, arrays, depth=4)
    if not arrays:
        arrays.append(rng.standard_normal(shape).astype(np.float32))
        e = ("add", e, ("in", 0))
    want = np.broadcast_to(_eval(e, arrays, np), shape)
    got = _eval(e, [luban.tensor(a) for a in arrays], luban)
    got = got if isinstance(got, luban.Tensor) else luban.tensor(np.asarray(got))
    got = got.expand(*shape) if tuple(got.shape) != shape else got
    axis = int(rng.integers(-1, len(shape)))  # -1: no reduction
    if axis >= 0:
        red = str(rng.choice(["sum", "amax"]))
        got = getattr(got, red)(axis)
        want = getattr(np, red)(want.astype(np.float64), axis=axis)
    np.testing.assert_allclose(got.numpy(), want, rtol=2e-5, atol=2e-5, err_msg=f"{e} on {shape}")
