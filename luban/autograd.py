"""Autograd: one backward rule per primitive, written with primitives, so the backward
pass is a lazy graph that fuses like the forward one.

Functions work on LazyBuffers; they know nothing of Tensor. The engine (`backward`)
walks any objects that carry `_ctx`, `requires_grad` and `grad`, so the frontend can
hand it tensors without this layer importing the frontend.
"""
from __future__ import annotations

import math
import threading

from . import dtypes
from .graph.lazy import LazyBuffer
from .graph.ops import Op

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "enabled", True)


class _GradMode:
    """Context manager and decorator (with or without parentheses), like torch.no_grad."""
    mode = True

    def __new__(cls, fn=None):
        self = super().__new__(cls)
        return self(fn) if callable(fn) else self

    def __enter__(self):
        self.prev = is_grad_enabled()
        set_grad_enabled(self.mode)

    def __exit__(self, *exc):
        _state.enabled = self.prev

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*a, **k):
            with type(self)():
                return fn(*a, **k)
        return wrapper


class no_grad(_GradMode):
    mode = False


class enable_grad(_GradMode):
    mode = True


class set_grad_enabled:
    """Sets grad mode now; as a context manager, restores the previous mode on exit."""

    def __init__(self, mode: bool):
        self.prev = is_grad_enabled()
        _state.enabled = bool(mode)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _state.enabled = self.prev


class Function:
    """Subclasses define forward(*LazyBuffer, **kw) -> LazyBuffer and
    backward(grad) -> one gradient (or None) per forward input."""

    def __init__(self, needs: tuple):
        self.needs_input_grad = needs
        self.parents: tuple = ()
        # each parent's Function when this one was applied (None: a leaf). The graph is
        # walked through these, not through the parents' current `_ctx`: an in-place op
        # later rebinds a tensor's `_ctx`, and an earlier use of it must still send its
        # gradient to the value it read (a = t * 1; b = a * 2; a.mul_(3): b's gradient
        # reaches t times 2, not times 6)
        self.parent_ctxs: tuple = ()
        self.output = None  # weakref to the tensor this Function's result is bound to (retain_grad)

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def backward(self, grad: LazyBuffer):
        raise NotImplementedError


def _c(x: LazyBuffer, v) -> LazyBuffer:
    return x.const_like(v)


# ---- unary ----------------------------------------------------------------------
class Neg(Function):
    def forward(self, x):
        return x.alu(Op.NEG)

    def backward(self, g):
        return g.alu(Op.NEG)


class Exp2(Function):
    def forward(self, x):
        self.out = x.alu(Op.EXP2)
        return self.out

    def backward(self, g):
        return g.alu(Op.MUL, self.out.alu(Op.MUL, _c(g, math.log(2))))


class Log2(Function):
    def forward(self, x):
        self.x = x
        return x.alu(Op.LOG2)

    def backward(self, g):
        return g.alu(Op.MUL, self.x.alu(Op.MUL, _c(g, math.log(2))).alu(Op.RECIP))


class Sin(Function):
    def forward(self, x):
        self.x = x
        return x.alu(Op.SIN)

    def backward(self, g):  # cos(x) = sin(pi/2 - x)
        cos = _c(g, math.pi / 2).alu(Op.ADD, self.x.alu(Op.NEG)).alu(Op.SIN)
        return g.alu(Op.MUL, cos)


class Sqrt(Function):
    def forward(self, x):
        self.out = x.alu(Op.SQRT)
        return self.out

    def backward(self, g):
        return g.alu(Op.MUL, self.out.alu(Op.MUL, _c(g, 2)).alu(Op.RECIP))


class Recip(Function):
    def forward(self, x):
        self.out = x.alu(Op.RECIP)
        return self.out

    def backward(self, g):
        return g.alu(Op.MUL, self.out.alu(Op.MUL, self.out)).alu(Op.NEG)


class Sigmoid(Function):
    """Composite with its own rule: composing exp/recip would give inf*0 = nan for
    large |x| in backward."""

    def forward(self, x):
        e = x.alu(Op.NEG).alu(Op.MUL, _c(x, 1 / math.log(2))).alu(Op.EXP2)
        self.out = _c(x, 1).alu(Op.ADD, e).alu(Op.RECIP)
        return self.out

    def backward(self, g):
        one_minus = _c(g, 1).alu(Op.ADD, self.out.alu(Op.NEG))
        return g.alu(Op.MUL, self.out.alu(Op.MUL, one_minus))


class Relu(Function):
    """max(x, 0), its gradient taken from the output as PyTorch does (g wherever out is
    not 0: none at 0, passed through a nan): the backward keeps no x, so a Linear's GEMM
    can end in the bias and the ReLU and store only the activation."""

    def forward(self, x):
        self.out = x.alu(Op.MAX, _c(x, 0))
        return self.out

    def backward(self, g):
        return self.out.alu(Op.CMPNE, _c(self.out, 0)).alu(Op.WHERE, g, _c(g, 0))


def _erf_parts(x: LazyBuffer) -> tuple:
    """(erf(x), exp(-x^2)), erf by Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7). The
    second is computed on the way, and equal trees are one value in a kernel, so a caller
    needing exp(-x^2) too (GELU's gradient) gets it free."""
    ax = x.alu(Op.MAX, x.alu(Op.NEG))
    t = _c(x, 1).alu(Op.ADD, ax.alu(Op.MUL, _c(x, 0.3275911))).alu(Op.RECIP)
    poly = _c(x, 1.061405429)
    for coef in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly = poly.alu(Op.MUL, t).alu(Op.ADD, _c(x, coef))
    poly = poly.alu(Op.MUL, t)
    e = ax.alu(Op.MUL, ax).alu(Op.NEG).alu(Op.MUL, _c(x, 1 / math.log(2))).alu(Op.EXP2)
    y = _c(x, 1).alu(Op.ADD, poly.alu(Op.MUL, e).alu(Op.NEG))
    neg = x.alu(Op.CMPLT, _c(x, 0))
    return neg.alu(Op.WHERE, y.alu(Op.NEG), y), e


def _exp_neg_sq(x: LazyBuffer, scale: float) -> LazyBuffer:
    """exp(-scale * x^2)."""
    return x.alu(Op.MUL, x).alu(Op.MUL, _c(x, -scale / math.log(2))).alu(Op.EXP2)


class Erf(Function):
    """_erf_parts forward, exact derivative backward."""

    def forward(self, x):
        self.x = x
        return _erf_parts(x)[0]

    def backward(self, g):
        return g.alu(Op.MUL, _exp_neg_sq(self.x, 1.0).alu(Op.MUL, _c(self.x, 2 / math.sqrt(math.pi))))


class Gelu(Function):
    """x * Phi(x), Phi the normal CDF, with its backward in one expression: g * (Phi(x) +
    x * phi(x)). Composed, autograd splits the backward over three kernels of the FFN's
    size (each recomputing erf) in a transformer step."""

    def forward(self, x):
        self.x = x
        return x.alu(Op.MUL, _cdf_parts(x)[0])

    def backward(self, g):
        x = self.x
        cdf, e = _cdf_parts(x)
        pdf = e.alu(Op.MUL, _c(x, 1 / math.sqrt(2 * math.pi)))  # e = exp(-x^2 / 2)
        return g.alu(Op.MUL, cdf.alu(Op.ADD, x.alu(Op.MUL, pdf)))


class Softmax(Function):
    """A softmax along `axes` (one; none for a 0-d x) whose value `out` the caller
    composed (without grad) from x; backward from that value: out * (g - sum(g * out)).
    The composed backward goes through the exp and recomputes it from x in every kernel
    that needs it; this one loads the stored probabilities (attention's backward: two exp
    passes a layer fewer)."""

    def forward(self, x, out, axes):
        self.out, self.axes = out, axes
        return out

    def backward(self, g):
        dot = g.alu(Op.MUL, self.out).reduce(Op.SUM, self.axes).expand(g.shape)
        return self.out.alu(Op.MUL, g.alu(Op.ADD, dot.alu(Op.NEG)))


def _cdf_parts(x: LazyBuffer) -> tuple:
    """(the normal CDF at x, (1 + erf(x / sqrt 2)) / 2, and exp(-x^2 / 2), the second
    from inside the erf)."""
    erf, e = _erf_parts(x.alu(Op.MUL, _c(x, 1 / math.sqrt(2))))
    return _c(x, 0.5).alu(Op.MUL, _c(x, 1).alu(Op.ADD, erf)), e


class Cast(Function):
    def forward(self, x, dtype):
        self.in_dtype = x.dtype
        return x.cast(dtype)

    def backward(self, g):
        return g.cast(self.in_dtype)


class Contiguous(Function):
    def forward(self, x):
        return x.contiguous()

    def backward(self, g):  # a value worth materializing has a gradient worth it too
        return g.contiguous()


class Copy(Function):
    def forward(self, x, device):
        self.src_device = x.device
        return x.copy_to(device)

    def backward(self, g):
        return g.copy_to(self.src_device)


# ---- binary / ternary -----------------------------------------------------------
class Add(Function):
    def forward(self, a, b):
        return a.alu(Op.ADD, b)

    def backward(self, g):
        return g if self.needs_input_grad[0] else None, g if self.needs_input_grad[1] else None


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a.alu(Op.MUL, b)

    def backward(self, g):
        return (g.alu(Op.MUL, self.b) if self.needs_input_grad[0] else None,
                g.alu(Op.MUL, self.a) if self.needs_input_grad[1] else None)


class Maximum(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a.alu(Op.MAX, b)

    def backward(self, g):  # ties split the gradient evenly, as PyTorch does
        a, b = self.a, self.b
        gt = b.alu(Op.CMPLT, a).cast(g.dtype)
        eq = a.alu(Op.CMPNE, b).alu(Op.CMPNE, _c(a, True).cast(dtypes.bool_)).cast(g.dtype)
        wa = gt.alu(Op.ADD, eq.alu(Op.MUL, _c(g, 0.5)))
        wb = _c(g, 1).alu(Op.ADD, wa.alu(Op.NEG))
        return (g.alu(Op.MUL, wa) if self.needs_input_grad[0] else None,
                g.alu(Op.MUL, wb) if self.needs_input_grad[1] else None)


class Where(Function):
    def forward(self, cond, a, b):
        self.cond = cond
        return cond.alu(Op.WHERE, a, b)

    def backward(self, g):
        zero = _c(g, 0)
        return (None,
                self.cond.alu(Op.WHERE, g, zero) if self.needs_input_grad[1] else None,
                self.cond.alu(Op.WHERE, zero, g) if self.needs_input_grad[2] else None)


# ---- reduce ---------------------------------------------------------------------
class Sum(Function):
    def forward(self, x, axes):
        self.in_shape = x.shape
        return x.reduce(Op.SUM, axes)

    def backward(self, g):
        return g.expand(self.in_shape)


class Max(Function):
    """Gradient flows to every maximal element, split evenly among ties (amax rule)."""

    def forward(self, x, axes):
        self.x, self.axes = x, axes
        self.out = x.reduce(Op.RMAX, axes)
        return self.out

    def backward(self, g):
        hit = self.x.alu(Op.CMPNE, self.out.expand(self.x.shape))
        hit = hit.alu(Op.CMPNE, _c(hit, True)).cast(g.dtype)
        count = hit.reduce(Op.SUM, self.axes).expand(self.x.shape)
        return hit.alu(Op.MUL, count.alu(Op.RECIP)).alu(Op.MUL, g.expand(self.x.shape))


# ---- movement -------------------------------------------------------------------
class Reshape(Function):
    def forward(self, x, shape):
        self.in_shape = x.shape
        return x.reshape(shape)

    def backward(self, g):
        return g.reshape(self.in_shape)


class Permute(Function):
    def forward(self, x, order):
        self.order = order
        return x.permute(order)

    def backward(self, g):
        inv = [0] * len(self.order)
        for i, o in enumerate(self.order):
            inv[o] = i
        return g.permute(tuple(inv))


class Expand(Function):
    def forward(self, x, shape):
        self.axes = tuple(i for i, (a, b) in enumerate(zip(x.shape, shape)) if a != b)
        return x.expand(shape)

    def backward(self, g):
        return g.reduce(Op.SUM, self.axes)


class Pad(Function):
    def forward(self, x, arg):
        self.narg = tuple((p, p + s) for s, (p, _) in zip(x.shape, arg))
        return x.pad(arg)

    def backward(self, g):
        return g.shrink(self.narg)


class Shrink(Function):
    def forward(self, x, arg):
        self.narg = tuple((a, s - b) for s, (a, b) in zip(x.shape, arg))
        return x.shrink(arg)

    def backward(self, g):
        return g.pad(self.narg)


class Flip(Function):
    def forward(self, x, axes):
        self.axes = axes
        return x.flip(axes)

    def backward(self, g):
        return g.flip(self.axes)


# ---- data-dependent -------------------------------------------------------------
class Gather(Function):
    def forward(self, x, idx, axis):
        self.x_shape, self.idx, self.axis = x.shape, idx, axis
        return x.gather(idx, axis)

    def backward(self, g):
        zeros = LazyBuffer.const(0, g.dtype, self.x_shape, g.device)
        return zeros.scatter_add(self.idx, g, self.axis), None


class ScatterAdd(Function):
    def forward(self, base, idx, val, axis):
        self.idx, self.axis = idx, axis
        return base.scatter_add(idx, val, axis)

    def backward(self, g):
        return (g if self.needs_input_grad[0] else None, None,
                g.gather(self.idx, self.axis) if self.needs_input_grad[2] else None)


class Freed(Function):
    """Stands in for a Function whose graph backward() already consumed."""

    def __init__(self, name: str):
        super().__init__(())
        self.name = name

    def backward(self, grad):
        raise RuntimeError(f"Trying to backward through the graph a second time (through {self.name}); its "
                           f"intermediate values were freed by the first backward(). Specify retain_graph=True "
                           f"on the first call if you need to backward through it again.")


# ---- the engine -----------------------------------------------------------------
def backward(root, grad: LazyBuffer, make_tensor, retain_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf) into every leaf's `.grad`.

    make_tensor(lazybuffer) wraps a LazyBuffer for `.grad`; the frontend supplies it.
    The graph's nodes are Functions, each reached through the `parent_ctxs` its consumers
    recorded (see Function).
    """
    order, seen = [], set()
    stack = [(root._ctx, False)]
    while stack:  # iterative topological sort: graphs of real models are deep
        ctx, done = stack.pop()
        if done:
            order.append(ctx)
            continue
        if id(ctx) in seen:
            continue
        seen.add(id(ctx))
        stack.append((ctx, True))
        stack.extend((c, False) for c in ctx.parent_ctxs if c is not None and id(c) not in seen)

    grads = {id(root._ctx): grad}
    for ctx in reversed(order):
        g = grads.pop(id(ctx), None)
        if g is None:
            continue
        out = ctx.output() if ctx.output is not None else None
        if out is not None and out._retains_grad and out._ctx is ctx:
            out.grad = make_tensor(g) if out.grad is None else make_tensor(out.grad.lazydata.alu(Op.ADD, g))
        res = ctx.backward(g)
        if not isinstance(res, tuple):
            res = (res,)
        for p, pctx, needs, pg in zip(ctx.parents, ctx.parent_ctxs, ctx.needs_input_grad, res):
            if pg is None or not needs:
                continue
            assert pg.shape == p.shape, f"{type(ctx).__name__} backward: grad {pg.shape} for input {p.shape}"
            if pg.dtype is not p.dtype:
                pg = pg.cast(p.dtype)
            if pctx is None:  # a leaf
                p.grad = make_tensor(pg) if p.grad is None else make_tensor(p.grad.lazydata.alu(Op.ADD, pg))
            else:
                prev = grads.get(id(pctx))
                grads[id(pctx)] = pg if prev is None else prev.alu(Op.ADD, pg)
        if not retain_graph:
            _free(ctx)


def _free(ctx: Function) -> None:
    """Turn ctx into a Freed in place: every tensor and consumer that refers to it then
    says why a second backward() fails, and what it saved goes."""
    name = type(ctx).__name__
    ctx.__dict__.clear()
    ctx.__class__ = Freed
    Freed.__init__(ctx, name)
