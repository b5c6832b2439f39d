"""What a device must compute like the reference: the conformance cases.

A Case is a function of luban tensors, the inputs to draw for it and whether its
gradient is checked. The runner (runner.py) evaluates each case on the device under
test and on the reference device, from the same inputs, and compares values, dtypes,
shapes and input gradients. Every op luban exposes is a composition of the primitives,
so these cases exercise each primitive in the ways the frontend combines them, in every
dtype the device claims.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import luban
import luban.nn.functional as F

FLOATS = ("float16", "bfloat16", "float32", "float64")
SIGNED = ("int8", "int16", "int32", "int64")
INTS = SIGNED + ("uint8",)
NUMERIC = INTS + FLOATS


@dataclass(frozen=True)
class Input:
    """shape: of the tensor the case sees; domain: a name in DOMAINS; view: how the
    tensor is made non-contiguous (None, "permuted", "sliced", "expanded")."""
    shape: tuple
    dtype: str = "float32"
    domain: str = "any"
    view: str | None = None
    grad: bool = True  # a gradient flows to it (when the case checks gradients)


@dataclass(frozen=True)
class Case:
    area: str
    name: str
    fn: Callable
    inputs: tuple = ()
    grad: bool = False
    dtypes: tuple = ()  # dtypes the case needs the device to claim (its inputs' by default)
    tol: float | None = None  # None: by the output dtype (runner.TOLERANCE)
    raises: type | None = None  # the case passes if the device raises this (and the reference does)
    extra: dict = field(default_factory=dict)

    def needs(self) -> set:
        return set(self.dtypes) | {i.dtype for i in self.inputs}


def _away_from_ints(r, s):
    return r.integers(-3, 3, s) + r.choice([0.2, 0.3, 0.7, 0.8], s)


DOMAINS = {
    "any": lambda r, s: r.uniform(-2, 2, s),
    "pos": lambda r, s: r.uniform(0.2, 3, s),
    "nonzero": lambda r, s: r.choice([-1.0, 1.0], s) * r.uniform(0.25, 2, s),
    "unit": lambda r, s: r.uniform(-0.9, 0.9, s),
    "frac": _away_from_ints,
    "small_int": lambda r, s: r.integers(-5, 6, s),
    "nonzero_int": lambda r, s: r.choice([-1, 1], s) * r.integers(1, 6, s),
    "index5": lambda r, s: r.integers(0, 5, s),
    "bool": lambda r, s: r.random(s) < 0.5,
}


def _inp(shape, dtype="float32", domain=None, view=None, grad=True) -> Input:
    if domain is None:
        domain = "bool" if dtype == "bool" else ("small_int" if dtype in INTS else "any")
    if domain == "small_int" and dtype == "uint8":
        domain = "index5"
    return Input(tuple(shape), dtype, domain, view, grad)


def _unary_cases() -> list:
    ops = {
        "abs": (lambda t: t.abs(), "nonzero"), "neg": (lambda t: -t, "any"), "exp": (lambda t: t.exp(), "any"),
        "exp2": (lambda t: t.exp2(), "any"), "log": (lambda t: t.log(), "pos"), "log2": (lambda t: t.log2(), "pos"),
        "sqrt": (lambda t: t.sqrt(), "pos"), "rsqrt": (lambda t: t.rsqrt(), "pos"),
        "reciprocal": (lambda t: t.reciprocal(), "nonzero"), "sin": (lambda t: t.sin(), "any"),
        "cos": (lambda t: t.cos(), "any"), "tanh": (lambda t: t.tanh(), "any"),
        "sigmoid": (lambda t: t.sigmoid(), "any"), "relu": (lambda t: t.relu(), "nonzero"),
        "gelu": (lambda t: F.gelu(t), "any"), "gelu_tanh": (lambda t: F.gelu(t, approximate="tanh"), "any"),
        "silu": (lambda t: F.silu(t), "any"), "softplus": (lambda t: F.softplus(t), "any"),
        "erf": (lambda t: t.erf(), "any"), "floor": (lambda t: t.floor(), "frac"),
        "ceil": (lambda t: t.ceil(), "frac"), "trunc": (lambda t: t.trunc(), "frac"),
        "round": (lambda t: t.round(), "frac"), "sign": (lambda t: t.sign(), "nonzero"),
        "square": (lambda t: t.square(), "any"), "clamp": (lambda t: t.clamp(-0.5, 0.7), "frac"),
        "pow_scalar": (lambda t: t.pow(3), "any"), "pow_frac": (lambda t: t ** 0.5, "pos"),
    }
    views = (None, "permuted", "sliced", "expanded")
    cases = []
    for k, (name, (fn, dom)) in enumerate(ops.items()):
        for dt in FLOATS:
            view = views[k % 4] if dt == "float32" else None
            cases.append(Case("unary", f"{name}[{dt}]", fn, (_inp((3, 5), dt, dom, view),), grad=dt == "float32"))
    for name, fn in {"abs": lambda t: t.abs(), "neg": lambda t: -t, "square": lambda t: t * t,
                     "clamp": lambda t: t.clamp(-2, 3)}.items():
        for dt in INTS:
            cases.append(Case("unary", f"{name}[{dt}]", fn, (_inp((4, 3), dt),)))
    return cases


def _binary_cases() -> list:
    arith = {
        "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
        "maximum": lambda a, b: luban.maximum(a, b), "minimum": lambda a, b: luban.minimum(a, b),
    }
    compare = {
        "lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b,
        "ge": lambda a, b: a >= b, "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
    }
    cases = []
    shapes = ((4, 1, 3), (5, 3))  # broadcasting
    for dt in NUMERIC:
        for name, fn in {**arith, **compare}.items():
            grad = dt == "float32" and name in arith
            cases.append(Case("binary", f"{name}[{dt}]", fn, (_inp(shapes[0], dt), _inp(shapes[1], dt)), grad=grad))
    for dt in FLOATS:
        cases.append(Case("binary", f"div[{dt}]", lambda a, b: a / b,
                          (_inp((4, 3), dt), _inp((4, 3), dt, "nonzero")), grad=dt == "float32"))
        cases.append(Case("binary", f"pow[{dt}]", lambda a, b: a ** b,
                          (_inp((4, 3), dt, "pos"), _inp((4, 3), dt)), grad=dt == "float32"))
        cases.append(Case("binary", f"remainder[{dt}]", lambda a, b: a % b,
                          (_inp((4, 3), dt, "any"), _inp((4, 3), dt, "nonzero"))))
    for dt in INTS:
        cases.append(Case("binary", f"floor_divide[{dt}]", lambda a, b: a // b,
                          (_inp((4, 3), dt), _inp((4, 3), dt, "nonzero_int" if dt != "uint8" else "pos_u8"))))
        cases.append(Case("binary", f"remainder[{dt}]", lambda a, b: a % b,
                          (_inp((4, 3), dt), _inp((4, 3), dt, "nonzero_int" if dt != "uint8" else "pos_u8"))))
        cases.append(Case("binary", f"bitwise[{dt}]", lambda a, b: (a & b) | (a ^ b),
                          (_inp((4, 3), dt), _inp((4, 3), dt))))
    for name, fn in {"and": luban.logical_and, "or": luban.logical_or, "xor": luban.logical_xor}.items():
        cases.append(Case("binary", f"logical_{name}[bool]", fn, (_inp((3, 4), "bool"), _inp((3, 4), "bool"))))
    for dt in NUMERIC + ("bool",):
        cases.append(Case("binary", f"where[{dt}]", lambda c, a, b: luban.where(c, a, b),
                          (_inp((3, 1), "bool"), _inp((3, 4), dt), _inp((1, 4), dt)), grad=dt == "float32"))
    return cases


def _cast_cases() -> list:
    """Every conversion between claimed dtypes (float -> int on values that fit)."""
    cases = []
    every = NUMERIC + ("bool",)
    for src in every:
        for dst in every:
            if src != dst:
                dom = "frac" if src in FLOATS else None
                cases.append(Case("cast", f"{src}->{dst}", lambda t, d=dst: t.to(getattr(luban, d)),
                                  (_inp((7,), src, dom),), dtypes=(dst,)))
    return cases


def _reduce_cases() -> list:
    ops = {
        "sum": lambda t: t.sum(1), "sum_all": lambda t: t.sum(), "sum_keep": lambda t: t.sum((0, 2), keepdim=True),
        "mean": lambda t: t.mean(-1), "max": lambda t: t.max(1).values, "min": lambda t: t.min(),
        "prod": lambda t: t.prod(2), "var": lambda t: t.var(1), "std": lambda t: t.std(),
        "logsumexp": lambda t: t.logsumexp(2), "softmax": lambda t: t.softmax(1),
        "log_softmax": lambda t: t.log_softmax(-1), "cumsum": lambda t: t.cumsum(2),
    }
    cases = [Case("reduce", f"{name}[float32]", fn, (_inp((3, 4, 5), "float32", "unit", "permuted" if k % 2 else None),),
                  grad=True) for k, (name, fn) in enumerate(ops.items())]
    for dt in NUMERIC:
        cases.append(Case("reduce", f"sum[{dt}]", lambda t: t.sum(0), (_inp((6, 3), dt, "unit" if dt in FLOATS else None),)))
        cases.append(Case("reduce", f"max[{dt}]", lambda t: t.amax(1), (_inp((6, 3), dt),)))
        cases.append(Case("reduce", f"argmax[{dt}]", lambda t: t.argmax(1), (_inp((6, 9), dt, "any" if dt in FLOATS else "index5_unique"),)))
        cases.append(Case("reduce", f"argmin[{dt}]", lambda t: t.argmin(0), (_inp((9, 4), dt, "any" if dt in FLOATS else "index5_unique"),)))
    cases.append(Case("reduce", "all_any[bool]", lambda t: luban.stack([t.all(1), t.any(1)]), (_inp((5, 3), "bool"),)))
    return cases


def _shape_cases() -> list:
    a = lambda *s: _inp(s)  # noqa: E731
    ops = {
        "reshape": (lambda t: t.reshape(6, 4), (a(2, 3, 4),)),
        "permute": (lambda t: t.permute(2, 0, 1) * 1, (a(2, 3, 4),)),
        "transpose": (lambda t: t.transpose(0, 1).T, (a(2, 3, 4),)),
        "expand": (lambda t: t.expand(3, 4, 5), (a(4, 1),)),
        "squeeze_unsqueeze": (lambda t: t.squeeze(1).unsqueeze(0), (a(3, 1, 4),)),
        "flatten": (lambda t: t.flatten(1), (a(2, 3, 4),)),
        "cat": (lambda x, y: luban.cat([x, y, x], 1), (a(2, 3), a(2, 5))),
        "stack": (lambda x, y: luban.stack([x, y], -1), (a(2, 3), a(2, 3))),
        "split": (lambda t: t.split(2, 1)[1] * t.chunk(3, 1)[0], (a(3, 6),)),
        "pad_constant": (lambda t: F.pad(t, (1, 2, 0, 1), value=0.5), (a(2, 3, 4),)),
        "pad_reflect": (lambda t: F.pad(t, (2, 1), mode="reflect"), (a(2, 3, 4),)),
        "pad_replicate": (lambda t: F.pad(t, (1, 2, 2, 0), mode="replicate"), (a(1, 2, 3, 4),)),
        "flip": (lambda t: t.flip(0, 2), (a(2, 3, 4),)),
        "repeat": (lambda t: t.repeat(2, 1, 3), (a(2, 3),)),
        "tril_triu": (lambda t: t.tril(-1) + t.triu(1) * 2, (a(4, 5),)),
        "slice": (lambda t: t[1:, ::2, -2:] * 2, (a(3, 5, 4),)),
    }
    return [Case("shape", name, fn, ins, grad=True) for name, (fn, ins) in ops.items()]


def _index_cases() -> list:
    idx = lambda *s: _inp(s, "int64", "index5", grad=False)  # noqa: E731
    a = lambda *s: _inp(s)  # noqa: E731
    ops = {
        "advanced_read": (lambda t, i: t[i, 1:], (a(5, 4), idx(3, 2))),
        "advanced_write": (lambda t, i, v: _setitem(t, i, v), (a(5, 4), _inp((2,), "int64", "unique5", grad=False), a(2, 4))),
        "gather": (lambda t, i: t.gather(1, i), (a(3, 5), idx(3, 4))),
        "scatter_add": (lambda t, i, v: t.scatter_add(1, i, v), (a(3, 5), idx(3, 4), a(3, 4))),
        "index_select": (lambda t, i: t.index_select(0, i), (a(5, 3), idx(7))),
        "masked_fill": (lambda t, m: t.masked_fill(m, -1.5), (a(3, 4), _inp((3, 4), "bool", grad=False))),
        "one_hot": (lambda i: F.one_hot(i, 5), (idx(6),)),
        "embedding": (lambda i, w: F.embedding(i, w), (idx(2, 3), a(5, 4))),
    }
    return [Case("index", name, fn, ins, grad=name != "one_hot") for name, (fn, ins) in ops.items()]


def _setitem(t, i, v):
    out = t * 1
    out[i] = v
    return out


def _linalg_cases() -> list:
    a = lambda *s: _inp(s, domain="unit")  # noqa: E731
    ops = {
        "matmul": (lambda x, y: x @ y, (a(5, 7), a(7, 3))),
        "matmul_batched_broadcast": (lambda x, y: x @ y, (a(2, 1, 4, 6), a(3, 6, 5))),
        "matmul_transposed": (lambda x, y: x.T @ y.T, (a(7, 5), a(3, 7))),
        "matvec": (lambda x, y: x @ y, (a(4, 6), a(6))),
        "einsum": (lambda x, y: luban.einsum("bij,bjk->bik", x, y), (a(2, 3, 4), a(2, 4, 5))),
        "conv1d": (lambda x, w: F.conv1d(x, w, stride=2, padding=1), (a(2, 3, 9), a(4, 3, 3))),
        "conv2d": (lambda x, w, b: F.conv2d(x, w, b, padding=1), (a(2, 3, 6, 6), a(4, 3, 3, 3), a(4))),
        "conv2d_strided_dilated": (lambda x, w: F.conv2d(x, w, stride=2, padding=2, dilation=2),
                                   (a(1, 2, 8, 7), a(3, 2, 3, 3))),
        "conv2d_groups": (lambda x, w: F.conv2d(x, w, groups=2), (a(2, 4, 5, 5), a(6, 2, 3, 3))),
        "conv_transpose2d": (lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1),
                             (a(1, 3, 4, 4), a(3, 2, 3, 3))),
        "max_pool2d": (lambda x: F.max_pool2d(x, 2), (_inp((2, 3, 6, 6), domain="any"),)),
        "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, stride=2, padding=1), (a(2, 3, 7, 7),)),
        "unfold": (lambda x: F.unfold(x, 3, padding=1, stride=2), (a(1, 2, 5, 5),)),
    }
    cases = [Case("linalg", name, fn, ins, grad=True) for name, (fn, ins) in ops.items()]
    for dt in ("float64", "float16", "bfloat16"):
        cases.append(Case("linalg", f"matmul[{dt}]", lambda x, y: x @ y,
                          (_inp((5, 7), dt, "unit"), _inp((7, 3), dt, "unit")), grad=dt == "float64"))
    return cases


def _nn_cases() -> list:
    a = lambda *s: _inp(s, domain="unit")  # noqa: E731
    target = _inp((6,), "int64", "index5", grad=False)
    ops = {
        "layer_norm": (lambda x, w, b: F.layer_norm(x, (5,), w, b), (a(3, 4, 5), a(5), a(5))),
        "cross_entropy": (lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1), (_inp((6, 5)), target)),
        "sdpa_causal": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                        (a(2, 2, 5, 4), a(2, 2, 5, 4), a(2, 2, 5, 4))),
        "mse": (lambda x, y: F.mse_loss(x, y), (a(4, 3), a(4, 3))),
        "bce_logits": (lambda x, y: F.binary_cross_entropy_with_logits(x, y.sigmoid()), (a(4, 3), a(4, 3))),
    }
    return [Case("nn", name, fn, ins, grad=True) for name, (fn, ins) in ops.items()]


def _random_cases() -> list:
    """The counter-based generator gives the same bits on every device."""
    def seeded(fn):
        def run():
            luban.manual_seed(1234)
            return fn()
        return run
    ops = {
        "rand": lambda: luban.rand(257, 3),
        "randn": lambda: luban.randn(1000),  # the same bits, through log and cos: equal to their precision
        "randint": lambda: luban.randint(-7, 100, (64,)),
        "dropout": lambda: F.dropout(luban.ones(40, 50), 0.3),
        "randperm": lambda: luban.randperm(50),
    }
    return [Case("random", name, seeded(fn), tol=None if name == "randn" else 0.0) for name, fn in ops.items()]


def _edge_cases() -> list:
    e = lambda *s: _inp(s, grad=False)  # noqa: E731
    ops = {
        "empty_elementwise": (lambda t: (t + 1).exp(), (e(0, 3),)),
        "empty_sum": (lambda t: t.sum(0), (e(0, 3),)),
        "empty_matmul": (lambda x, y: x @ y, (e(0, 3), e(3, 4))),
        "empty_cat": (lambda x, y: luban.cat([x, y]), (e(0, 3), e(2, 3))),
        "size1_dims": (lambda t: (t * 2).sum((0, 2), keepdim=True) + t, (e(1, 4, 1),)),
        "scalar": (lambda t: (t * 3).exp(), (e(),)),
        "huge_sum": (lambda t: t.sum(), (_inp((1 << 22,), domain="pos", grad=False),)),
        "huge_max": (lambda t: t.max(), (e(1 << 21),)),
        "huge_rows": (lambda t: t.mean(1), (e(3, 1 << 19),)),
        "long_softmax": (lambda t: t.softmax(-1), (e(2, 100000),)),
        "noncontig_matmul": (lambda x, y: x.permute(1, 0)[::2] @ y[:, 1::2], (e(6, 10), e(6, 8))),
        "flipped_slice": (lambda t: t.flip(1)[:, 1:-1:3] * 2, (e(4, 11),)),
        "expanded_add": (lambda x, y: x.expand(5, 4) + y, (e(1, 4), e(5, 1))),
        "int8_wraps": (lambda t: (t * 64) + 100, (_inp((6,), "int8"),)),
        "int_div_by_zero": (lambda t: t // (t * 0), (_inp((5,), "int32"),)),
        "float_div_by_zero": (lambda t: (t * 0) / (t * 0) + t / 0, (e(4),)),
    }
    cases = [Case("edge", name, fn, ins) for name, (fn, ins) in ops.items()]
    bad = lambda *s: _inp(s, "int64", "out_of_range", grad=False)  # noqa: E731
    raising = {
        "gather_out_of_range": (lambda t, i: t.gather(1, i), (e(3, 5), bad(3, 2))),
        "index_out_of_range": (lambda t, i: t[i], (e(5, 2), bad(3))),
        "scatter_out_of_range": (lambda t, i: t.scatter_add(0, i, t[:3] * 1), (e(5, 2), bad(3, 2))),
        "embedding_out_of_range": (lambda w, i: F.embedding(i, w), (e(5, 2), bad(4))),
    }
    cases += [Case("edge", name, fn, ins, raises=IndexError) for name, (fn, ins) in raising.items()]
    return cases


DOMAINS.update({
    "pos_u8": lambda r, s: r.integers(1, 6, s),
    "unique5": lambda r, s: r.permutation(5)[: math.prod(s)].reshape(s),
    "index5_unique": lambda r, s: np.argsort(r.random(s), axis=-1) - 3,  # distinct per row: no argmax ties
    "out_of_range": lambda r, s: np.where(np.arange(math.prod(s)).reshape(s) == 1, 7, 0),
})


def op_cases() -> list:
    return (_unary_cases() + _binary_cases() + _cast_cases() + _reduce_cases() + _shape_cases()
            + _index_cases() + _linalg_cases() + _nn_cases() + _random_cases() + _edge_cases())
