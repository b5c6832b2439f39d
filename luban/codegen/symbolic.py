"""Integer index expressions for address arithmetic, simplified by range analysis.

Every expression knows the range [vmin, vmax] of its values. Constructors keep a
normal form: sums are flattened with merged coefficients, and `//` / `%` by a
constant are rewritten when the ranges prove it safe, so that e.g. a RESHAPE that
merges or splits dims of a contiguous view addresses memory as `i0*K + i1`.

`//` and `%` here are floor operations, rendered as C's truncating `/` and `%`.
They agree because a rewrite only keeps a numerator whose minimum is >= 0, and an
index is only rendered where it is valid (PAD guards its source), so numerators
are non-negative at run time.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property


class Expr:
    vmin: int
    vmax: int

    def __add__(self, other) -> Expr:
        return _sum([(self, 1), (sym(other), 1)])

    __radd__ = __add__

    def __neg__(self) -> Expr:
        return self * -1

    def __sub__(self, other) -> Expr:
        return self + -sym(other)

    def __rsub__(self, other) -> Expr:
        return sym(other) + -self

    def __mul__(self, c: int) -> Expr:
        if not isinstance(c, int):
            raise TypeError(f"index expressions multiply by int constants only, got {c!r}")
        return _sum([(self, c)])

    __rmul__ = __mul__

    def __floordiv__(self, c: int) -> Expr:
        return _div(self, c)

    def __mod__(self, c: int) -> Expr:
        return _mod(self, c)

    def render(self) -> str:
        raise NotImplementedError

    def names(self) -> frozenset:
        """Names of the variables the value depends on."""
        return frozenset()


@dataclass(frozen=True)
class Const(Expr):
    v: int

    @property
    def vmin(self) -> int:
        return self.v

    vmax = vmin

    def render(self) -> str:
        return str(self.v)


@dataclass(frozen=True)
class Var(Expr):
    """A loop counter (or a checked runtime index) with values in [0, n)."""
    name: str
    n: int

    vmin = 0

    @property
    def vmax(self) -> int:
        return self.n - 1

    def render(self) -> str:
        return self.name

    def names(self) -> frozenset:
        return frozenset((self.name,))


@dataclass(frozen=True)
class Div(Expr):
    x: Expr
    c: int

    @cached_property
    def vmin(self) -> int:
        return self.x.vmin // self.c

    @cached_property
    def vmax(self) -> int:
        return self.x.vmax // self.c

    def render(self) -> str:
        return f"({_operand(self.x)}/{self.c})"

    def names(self) -> frozenset:
        return self.x.names()


@dataclass(frozen=True)
class Mod(Expr):
    x: Expr
    c: int

    @cached_property
    def vmin(self) -> int:
        return 0 if self.x.vmin >= 0 else 1 - self.c

    @cached_property
    def vmax(self) -> int:
        return min(self.c - 1, self.x.vmax) if self.x.vmin >= 0 else self.c - 1

    def render(self) -> str:
        return f"({_operand(self.x)}%{self.c})"

    def names(self) -> frozenset:
        return self.x.names()


@dataclass(frozen=True)
class Sum(Expr):
    """const + sum(coef * atom); atoms are Var, Div or Mod, each at most once."""
    terms: tuple
    const: int

    @cached_property
    def vmin(self) -> int:
        return self.const + sum(c * (a.vmin if c > 0 else a.vmax) for a, c in self.terms)

    @cached_property
    def vmax(self) -> int:
        return self.const + sum(c * (a.vmax if c > 0 else a.vmin) for a, c in self.terms)

    def render(self) -> str:
        out = ""
        for a, c in self.terms:
            term = a.render() if abs(c) == 1 else f"{a.render()}*{abs(c)}"
            out += (" - " if c < 0 else " + ") + term if out else ("-" if c < 0 else "") + term
        if self.const:
            out += f" - {-self.const}" if self.const < 0 else f" + {self.const}"
        return out

    def names(self) -> frozenset:
        return frozenset().union(*(a.names() for a, _ in self.terms))


def sym(x) -> Expr:
    if isinstance(x, Expr):
        return x
    if isinstance(x, int):
        return Const(x)
    raise TypeError(f"not an index expression: {x!r}")


def var(name: str, n: int) -> Expr:
    """A counter over range(n); a size-1 range is the constant 0."""
    return Const(0) if n == 1 else Var(name, n)


def _operand(x: Expr) -> str:
    return f"({x.render()})" if isinstance(x, Sum) else x.render()


def _linear(x: Expr) -> tuple[dict, int]:
    """x as ({atom: coef}, const)."""
    if isinstance(x, Const):
        return {}, x.v
    if isinstance(x, Sum):
        return dict(x.terms), x.const
    return {x: 1}, 0


def _sum(parts: list) -> Expr:
    terms: dict = {}
    const = 0
    for x, c in parts:
        sub, k = _linear(x)
        const += c * k
        for a, ac in sub.items():
            terms[a] = terms.get(a, 0) + c * ac
    terms = {a: c for a, c in terms.items() if c}
    # (x//m)*m*k + (x%m)*k  ->  x*k: recombines a dim split by RESHAPE
    for a in list(terms):
        if isinstance(a, Mod) and terms.get(Div(a.x, a.c)) == terms[a] * a.c:
            k = terms.pop(a)
            del terms[Div(a.x, a.c)]
            return _sum([(_sum_of(terms, const), 1), (a.x, k)])
    return _sum_of(terms, const)


def _sum_of(terms: dict, const: int) -> Expr:
    if not terms:
        return Const(const)
    if len(terms) == 1 and const == 0:
        (a, c), = terms.items()
        if c == 1:
            return a
    # biggest stride first, so a row-major address reads i0*K + i1
    order = sorted(terms.items(), key=lambda t: (-abs(t[1]), t[0].render()))
    return Sum(tuple(order), const)


def _split(x: Expr, c: int) -> tuple[Expr, Expr]:
    """x = q*c + r where q collects the terms (and constant) divisible by c."""
    terms, const = _linear(x)
    q = _sum([(a, k // c) for a, k in terms.items() if k % c == 0] + [(Const(const // c), 1)])
    r = _sum([(a, k) for a, k in terms.items() if k % c] + [(Const(const % c), 1)])
    return q, r


def _div(x: Expr, c: int) -> Expr:
    if c <= 0:
        raise ValueError(f"index division by non-positive constant {c}")
    if c == 1:
        return x
    if isinstance(x, Const):
        return Const(x.v // c)
    if 0 <= x.vmin and x.vmax < c:
        return Const(0)
    if isinstance(x, Div) and x.x.vmin >= 0:
        return _div(x.x, x.c * c)
    q, r = _split(x, c)
    if not (isinstance(q, Const) and q.v == 0) and r.vmin >= 0:
        return q + _div(r, c)
    return Div(x, c)


def _mod(x: Expr, c: int) -> Expr:
    if c <= 0:
        raise ValueError(f"index modulo by non-positive constant {c}")
    if c == 1:
        return Const(0)
    if isinstance(x, Const):
        return Const(x.v % c)
    if 0 <= x.vmin and x.vmax < c:
        return x
    if isinstance(x, Mod) and x.c % c == 0 and x.x.vmin >= 0:
        return _mod(x.x, c)
    q, r = _split(x, c)
    if not (isinstance(q, Const) and q.v == 0) and r.vmin >= 0:
        return _mod(r, c)
    return Mod(x, c)


def linearize(idx, shape) -> Expr:
    """Row-major offset of index tuple `idx` in `shape`."""
    out, step = Const(0), 1
    for i, n in zip(reversed(idx), reversed(shape)):
        out, step = out + sym(i) * step, step * n
    return out


def unravel(lin: Expr, shape) -> list:
    """Index tuple in `shape` of row-major offset `lin`."""
    if 0 in shape:  # nothing to address; such loops never run
        return [Const(0)] * len(shape)
    idx, step = [], 1
    for n in reversed(shape):
        idx.append((lin // step) % n)
        step *= n
    return idx[::-1]


def in_range(x: Expr, n: int):
    """Condition 0 <= x < n: True or False when the ranges decide it, else C text."""
    if x.vmax < 0 or x.vmin >= n:
        return False
    conds = ([f"{x.render()} >= 0"] if x.vmin < 0 else []) + ([f"{x.render()} < {n}"] if x.vmax >= n else [])
    return " && ".join(conds) if conds else True


def stride(x: Expr, name: str):
    """How much x grows when variable `name` grows by 1: its coefficient where x is affine
    in it (0 if x does not use it), None where it sits under // or %."""
    terms, _ = _linear(x)
    coef = terms.get(next((a for a in terms if isinstance(a, Var) and a.name == name), None), 0)
    irregular = any(name in a.names() for a in terms if not isinstance(a, Var))
    return None if irregular else coef
