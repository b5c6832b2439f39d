"""Tensor: the user-facing array with PyTorch names and semantics.

Every method is a composition of the primitives in graph/ops.py applied through the
autograd Functions; nothing here touches device memory except the edges
(`tensor(...)`, `.numpy()`).
"""
from __future__ import annotations

import math
import weakref
from typing import Any, Sequence

import numpy as np

from . import autograd as F
from . import dtypes
from .dtypes import DType
from .graph.lazy import LazyBuffer, prod
from .graph.ops import Op
from .runtime import canonical_device, default_device
from .schedule import from_numpy, realize, to_numpy

Scalar = (int, float, bool, np.number, np.bool_)
LOG2E, LN2 = 1 / math.log(2), math.log(2)


def _norm_dim(d: int, n: int, op: str = "dim") -> int:
    m = max(n, 1)
    if not -m <= d < m:
        raise IndexError(f"{op}: dimension out of range (expected to be in range of [{-m}, {m - 1}], but got {d})")
    return d % m if n else 0


def broadcast_shape(*shapes, op: str = "broadcast") -> tuple:
    n = max(len(s) for s in shapes)
    padded = [(1,) * (n - len(s)) + tuple(s) for s in shapes]
    out = []
    for i, dims in enumerate(zip(*padded)):
        big = {d for d in dims if d != 1}
        if len(big) > 1:
            a, b = sorted(big)[:2]
            raise RuntimeError(f"{op}: the size of tensor a ({a}) must match the size of tensor b ({b}) "
                               f"at non-singleton dimension {i}; shapes {' and '.join(str(tuple(s)) for s in shapes)}")
        out.append(big.pop() if big else 1)
    return tuple(out)


def _infer_dtype(data) -> DType:
    if isinstance(data, (np.ndarray, np.generic)):
        return dtypes.get_dtype(data.dtype)
    flat = np.asarray(data)
    if flat.dtype == np.bool_:
        return dtypes.bool_
    if flat.dtype.kind in "iu":
        return dtypes.int64
    if flat.dtype.kind == "f":
        return dtypes.default_float
    raise TypeError(f"tensor(): can't infer a dtype from data of NumPy dtype {flat.dtype}")


class Tensor:
    __slots__ = ("lazydata", "requires_grad", "grad", "_ctx", "_retains_grad", "__weakref__")
    __array_priority__ = 1000  # numpy scalar op Tensor -> our reflected operator

    def __init__(self, data: Any, dtype=None, device=None, requires_grad: bool = False):
        dtype = None if dtype is None else dtypes.get_dtype(dtype)
        if isinstance(data, LazyBuffer):
            lb = data if dtype is None else data.cast(dtype)
            if device is not None:
                lb = lb.copy_to(canonical_device(device))
        else:
            device = default_device() if device is None else canonical_device(device)
            if isinstance(data, Tensor):
                data = data.numpy()
            if dtype is None:
                dtype = _infer_dtype(data)
            arr = np.asarray(data)
            if arr.dtype == object:
                raise TypeError(f"tensor(): could not convert {type(data).__name__} of ragged or non-numeric data")
            if dtype.is_int and arr.dtype.kind == "f":
                arr = np.trunc(arr)
            lb = from_numpy(arr.astype(dtype.np), dtype, device)
        self.lazydata: LazyBuffer = lb
        self.grad: Tensor | None = None
        self._ctx = None
        self._retains_grad = False
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # ---- construction helpers --------------------------------------------------------
    @classmethod
    def _wrap(cls, lb: LazyBuffer, ctx=None, requires_grad: bool = False) -> "Tensor":
        t = cls.__new__(cls)
        t.lazydata, t.grad, t._ctx, t._retains_grad, t.requires_grad = lb, None, ctx, False, requires_grad
        return t

    @staticmethod
    def _apply(fn_cls, *parents: "Tensor", **kwargs) -> "Tensor":
        needs = tuple(p.requires_grad for p in parents)
        ctx = fn_cls(needs)
        out = ctx.forward(*[p.lazydata for p in parents], **kwargs)
        if F.is_grad_enabled() and any(needs):
            ctx.parents, ctx.parent_ctxs = parents, tuple(p._ctx for p in parents)
            t = Tensor._wrap(out, ctx, True)
            ctx.output = weakref.ref(t)
            return t
        return Tensor._wrap(out)

    def _const(self, value, dtype: DType | None = None, shape=None) -> "Tensor":
        dtype = dtype or self.dtype
        return Tensor._wrap(LazyBuffer.const(value, dtype, self.shape if shape is None else tuple(shape), self.device))

    # ---- properties ------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return Size(self.lazydata.shape)

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[_norm_dim(dim, self.ndim)]

    @property
    def dtype(self) -> DType:
        return self.lazydata.dtype

    @property
    def device(self) -> str:
        return self.lazydata.device

    @property
    def ndim(self) -> int:
        return len(self.lazydata.shape)

    def dim(self) -> int:
        return self.ndim

    def numel(self) -> int:
        return prod(self.lazydata.shape)

    def element_size(self) -> int:
        return self.dtype.itemsize

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    def is_floating_point(self) -> bool:
        return self.dtype.is_float

    def __len__(self) -> int:
        if not self.ndim:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    # ---- realization and host data -----------------------------------------------------
    def realize(self) -> "Tensor":
        realize([self.lazydata])
        return self

    def numpy(self) -> np.ndarray:
        return to_numpy(self.lazydata)

    def item(self):
        if self.numel() != 1:
            raise RuntimeError(f"a Tensor with {self.numel()} elements cannot be converted to Scalar")
        return self.numpy().reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(")
        extra = ""
        if self.dtype not in (dtypes.float32, dtypes.int64, dtypes.bool_):
            extra += f", dtype={self.dtype!r}"
        if self.device != "cpu":
            extra += f", device='{self.device}'"
        if self._ctx is not None:
            extra += f", grad_fn=<{type(self._ctx).__name__}Backward>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    __str__ = __repr__

    def __bool__(self) -> bool:
        if self.numel() != 1:
            raise RuntimeError(f"Boolean value of Tensor with {self.numel()} elements is ambiguous")
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.dtype.is_float or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __hash__(self) -> int:
        return id(self)

    def __deepcopy__(self, memo) -> "Tensor":
        # buffers are immutable, so a copy may share them; a deep copy must not drag the
        # device (and its compiled programs) along
        t = type(self).__new__(type(self))
        t.lazydata, t._ctx, t._retains_grad, t.requires_grad = self.lazydata, None, False, self.requires_grad
        t.grad = None if self.grad is None else self.grad.__deepcopy__(memo)
        memo[id(self)] = t
        return t

    def __reduce__(self):
        # pickling (DataLoader workers, multiprocessing) goes through host memory
        return (_from_pickle, (self.numpy(), self.dtype.name, self.device, self.requires_grad))

    # ---- autograd ---------------------------------------------------------------------
    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        if requires_grad and not (self.dtype.is_float):
            raise RuntimeError(f"only Tensors of floating point dtype can require gradients, got {self.dtype}")
        if not self.is_leaf and not requires_grad:
            raise RuntimeError("you can only change requires_grad flags of leaf variables")
        self.requires_grad = requires_grad
        return self

    def retain_grad(self) -> None:
        if not self.is_leaf:
            self._retains_grad = True

    def detach(self) -> "Tensor":
        return Tensor._wrap(self.lazydata)

    def detach_(self) -> "Tensor":
        self._ctx, self.requires_grad = None, False
        return self

    @property
    def data(self) -> "Tensor":
        return self.detach()

    @data.setter
    def data(self, value: "Tensor") -> None:
        if tuple(value.shape) != tuple(self.shape):
            raise RuntimeError(f"data: new shape {tuple(value.shape)} differs from {tuple(self.shape)}")
        self.lazydata = value.lazydata.cast(self.dtype)

    def backward(self, gradient: "Tensor | None" = None, retain_graph: bool = False) -> None:
        if not self.requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
        if gradient is None:
            if self.numel() != 1:
                raise RuntimeError(f"grad can be implicitly created only for scalar outputs; got shape {tuple(self.shape)}")
            g = LazyBuffer.const(1.0, self.dtype, self.lazydata.shape, self.device)
        else:
            gradient = _as_tensor(gradient, self)
            if tuple(gradient.shape) != tuple(self.shape):
                raise RuntimeError(f"backward: gradient shape {tuple(gradient.shape)} does not match output shape "
                                   f"{tuple(self.shape)}")
            g = gradient.lazydata.cast(self.dtype)
        if self._ctx is None:  # a leaf: d self / d self = gradient
            self.grad = Tensor._wrap(g) if self.grad is None else Tensor._wrap(self.grad.lazydata.alu(Op.ADD, g))
            return
        F.backward(self, g, Tensor._wrap, retain_graph=retain_graph)

    # ---- device and dtype movement -------------------------------------------------------
    def to(self, *args, **kwargs) -> "Tensor":
        dtype, device = kwargs.get("dtype"), kwargs.get("device")
        for a in args:
            if isinstance(a, Tensor):
                dtype, device = a.dtype, a.device
            elif isinstance(a, DType) or a in (float, int, bool) or (isinstance(a, str) and _is_dtype_name(a)):
                dtype = a
            else:
                device = a
        out = self
        if device is not None and canonical_device(device) != self.device:
            out = Tensor._apply(F.Copy, out, device=canonical_device(device))
        if dtype is not None:
            out = out.cast(dtype)
        return out

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def cast(self, dtype) -> "Tensor":
        dtype = dtypes.get_dtype(dtype)
        if dtype is self.dtype:
            return self
        if self.requires_grad and not dtype.is_float:
            return Tensor._wrap(self.lazydata.cast(dtype))
        return Tensor._apply(F.Cast, self, dtype=dtype)

    def type(self, dtype=None):
        return self.dtype.name if dtype is None else self.cast(dtype)

    def float(self) -> "Tensor":
        return self.cast(dtypes.float32)

    def double(self) -> "Tensor":
        return self.cast(dtypes.float64)

    def half(self) -> "Tensor":
        return self.cast(dtypes.float16)

    def bfloat16(self) -> "Tensor":
        return self.cast(dtypes.bfloat16)

    def int(self) -> "Tensor":
        return self.cast(dtypes.int32)

    def long(self) -> "Tensor":
        return self.cast(dtypes.int64)

    def bool(self) -> "Tensor":
        return self.cast(dtypes.bool_)

    def contiguous(self) -> "Tensor":
        return Tensor._apply(F.Contiguous, self)

    def clone(self) -> "Tensor":
        # buffers are never mutated (in-place ops rebind lazydata), so a view is a copy
        return Tensor._apply(F.Contiguous, self)

    # ---- broadcasting and promotion ----------------------------------------------------
    def _broadcast_to(self, shape: tuple) -> "Tensor":
        shape = tuple(shape)
        if tuple(self.shape) == shape:
            return self
        x = self
        if x.ndim < len(shape):
            x = x.reshape((1,) * (len(shape) - x.ndim) + tuple(x.shape))
        return Tensor._apply(F.Expand, x, shape=shape) if tuple(x.shape) != shape else x

    def _operands(self, other, op: str, reverse: bool = False, dtype: DType | None = None):
        """Promote dtypes like PyTorch and broadcast shapes like NumPy."""
        if isinstance(other, Tensor):
            if other.device != self.device:
                raise RuntimeError(f"{op}: expected all tensors to be on the same device, but found at least two "
                                   f"devices, {self.device} and {other.device}; move one with .to(device)")
            if dtype is None:
                dtype = _promote_tensors(self, other)
            a, b = self.cast(dtype), other.cast(dtype)
        elif isinstance(other, Scalar):
            if dtype is None:
                dtype = dtypes.promote_with_scalar(self.dtype, other)
            a, b = self.cast(dtype), None
            b = Tensor._wrap(LazyBuffer.const(other, dtype, (), self.device))
        else:
            raise TypeError(f"{op}: unsupported operand type {type(other).__name__}; expected a Tensor or a number")
        shape = broadcast_shape(a.shape, b.shape, op=op)
        a, b = a._broadcast_to(shape), b._broadcast_to(shape)
        return (b, a) if reverse else (a, b)

    # ---- arithmetic --------------------------------------------------------------------
    def add(self, other, alpha=1) -> "Tensor":
        if alpha != 1:
            other = other * alpha
        a, b = self._operands(other, "add")
        return Tensor._apply(F.Add, a, b)

    def sub(self, other, alpha=1) -> "Tensor":
        if self.dtype.is_bool or (isinstance(other, Tensor) and other.dtype.is_bool) or isinstance(other, bool):
            raise RuntimeError("Subtraction, the `-` operator, with a bool tensor is not supported. If you are trying "
                               "to invert a mask, use the `~` or `logical_not()` operator instead.")
        a, b = self._operands(other, "sub")
        return Tensor._apply(F.Add, a, -(b * alpha) if alpha != 1 else -b)

    def rsub(self, other) -> "Tensor":
        if self.dtype.is_bool or isinstance(other, bool):
            return self.sub(other)  # raises the bool error
        a, b = self._operands(other, "rsub", reverse=True)
        return a - b

    def mul(self, other) -> "Tensor":
        a, b = self._operands(other, "mul")
        if a.dtype.is_bool:
            return a.logical_and(b)
        return Tensor._apply(F.Mul, a, b)

    def div(self, other, rounding_mode: str | None = None) -> "Tensor":
        if rounding_mode == "floor":
            return self.floor_divide(other)
        if rounding_mode == "trunc":
            a, b = self._operands(other, "div")
            if a.dtype.is_int:
                return Tensor._wrap(a.lazydata.alu(Op.IDIV, b.lazydata))
            return (a / b).trunc()
        if rounding_mode is not None:
            raise ValueError(f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}")
        dt = _result_dtype(self, other)
        a, b = self._operands(other, "div", dtype=dt if dt.is_float else dtypes.default_float)
        return a * b.reciprocal()

    def true_divide(self, other) -> "Tensor":
        return self.div(other)

    def floor_divide(self, other) -> "Tensor":
        a, b = self._operands(other, "floor_divide")
        if a.dtype.is_float:
            return (a / b).floor()
        q = Tensor._wrap(a.lazydata.alu(Op.IDIV, b.lazydata))
        r = Tensor._wrap(a.lazydata.alu(Op.MOD, b.lazydata))
        fix = (r != 0).logical_and((r < 0) != (b < 0))
        return q - fix.cast(q.dtype)

    def remainder(self, other) -> "Tensor":
        """Python's %: the result takes the divisor's sign."""
        a, b = self._operands(other, "remainder")
        if a.dtype.is_float:
            return a - (a / b).floor() * b
        r = Tensor._wrap(a.lazydata.alu(Op.MOD, b.lazydata))
        fix = (r != 0).logical_and((r < 0) != (b < 0))
        return where(fix, r + b, r)

    def fmod(self, other) -> "Tensor":
        a, b = self._operands(other, "fmod")
        if a.requires_grad or b.requires_grad:
            return a - (a / b).trunc() * b
        return Tensor._wrap(a.lazydata.alu(Op.MOD, b.lazydata))

    def neg(self) -> "Tensor":
        if self.dtype.is_bool:
            raise RuntimeError("neg: negation of a bool tensor is not supported; use logical_not() or ~")
        return Tensor._apply(F.Neg, self)

    def reciprocal(self) -> "Tensor":
        x = self if self.dtype.is_float else self.float()
        return Tensor._apply(F.Recip, x)

    def pow(self, exponent) -> "Tensor":
        if isinstance(exponent, Scalar) and not isinstance(exponent, (bool, np.bool_)):
            e = float(exponent)
            if e == 0:
                return self._const(1, dtypes.promote_with_scalar(self.dtype, exponent)) + self._ste()
            if e == 1:
                return self.cast(dtypes.promote_with_scalar(self.dtype, exponent))
            if e == 0.5:
                return self.sqrt()
            if e.is_integer() and abs(e) <= 4:
                x = self.cast(dtypes.promote_with_scalar(self.dtype, exponent))
                out = x
                for _ in range(int(abs(e)) - 1):
                    out = out * x
                return out.reciprocal() if e < 0 else out
        base, exp_ = self._operands(exponent, "pow")
        if not base.dtype.is_float:
            if not isinstance(exponent, Tensor) and float(exponent) == int(exponent) and exponent >= 0:
                return _int_pow(base, int(exponent))  # exact by repeated squaring
            # integer ** integer tensor stays integer, as in torch: compute in float64, round
            return base.double().pow(exp_.double()).round().cast(base.dtype)
        mag = (base.abs().log2() * exp_).exp2()
        is_int = exp_ == exp_.trunc()
        odd = is_int.logical_and(exp_.abs().fmod(2) == 1)
        neg = base < 0
        sign = where(neg.logical_and(odd), -1.0, 1.0).cast(mag.dtype)
        out = where(neg.logical_and(is_int.logical_not()), math.nan, mag * sign)
        return where(exp_ == 0, 1.0, out).cast(base.dtype)

    def __pow__(self, e):
        return self.pow(e)

    def __rpow__(self, b):
        base = Tensor._wrap(LazyBuffer.const(b, _result_dtype(self, b), (), self.device))
        return base.pow(self)

    def maximum(self, other) -> "Tensor":
        a, b = self._operands(other, "maximum")
        if a.dtype.is_bool:
            return a.logical_or(b)
        return Tensor._apply(F.Maximum, a, b)

    def minimum(self, other) -> "Tensor":
        a, b = self._operands(other, "minimum")
        if a.dtype.is_bool:
            return a.logical_and(b)
        return -((-a).maximum(-b)) if not a.dtype.kind == "u" else where(a < b, a, b)

    def clamp(self, min=None, max=None) -> "Tensor":
        """where-based, so the gradient is 1 at the bounds and nan passes through, like torch."""
        if min is None and max is None:
            raise RuntimeError("clamp: at least one of 'min' or 'max' must not be None")
        out = self
        if min is not None:
            out = where(out < min, min, out)
        if max is not None:
            out = where(out > max, max, out)
        return out

    clip = clamp

    def clamp_min(self, v) -> "Tensor":
        return self.clamp(min=v)

    def clamp_max(self, v) -> "Tensor":
        return self.clamp(max=v)

    # ---- comparisons and logic ------------------------------------------------------------
    def _cmp(self, other, op: Op, name: str, swap: bool = False) -> "Tensor":
        a, b = self._operands(other, name)
        if swap:
            a, b = b, a
        return Tensor._wrap(a.lazydata.alu(op, b.lazydata))

    def __lt__(self, o):
        return self._cmp(o, Op.CMPLT, "lt")

    def __gt__(self, o):
        return self._cmp(o, Op.CMPLT, "gt", swap=True)

    def __le__(self, o):  # not "not >": that would be true for nan
        return self._cmp(o, Op.CMPLT, "le").logical_or(self == o)

    def __ge__(self, o):
        return self._cmp(o, Op.CMPLT, "ge", swap=True).logical_or(self == o)

    def __ne__(self, o):  # type: ignore[override]
        return self._cmp(o, Op.CMPNE, "ne")

    def __eq__(self, o):  # type: ignore[override]
        return self._cmp(o, Op.CMPNE, "eq").logical_not()

    lt, gt, le, ge, ne, eq = __lt__, __gt__, __le__, __ge__, __ne__, __eq__

    def equal(self, other: "Tensor") -> bool:
        return tuple(self.shape) == tuple(other.shape) and bool((self == other).all().item())

    def logical_not(self) -> "Tensor":
        b = self.bool()
        return Tensor._wrap(b.lazydata.alu(Op.CMPNE, LazyBuffer.const(True, dtypes.bool_, b.lazydata.shape, b.device)))

    def _bitwise(self, other, op: Op, name: str) -> "Tensor":
        a, b = self._operands(other, name)
        if a.dtype.is_float:
            raise RuntimeError(f"{name}: not implemented for floating point dtype {a.dtype}; use integer or bool tensors")
        return Tensor._wrap(a.lazydata.alu(op, b.lazydata))

    def logical_and(self, other) -> "Tensor":
        return self.bool()._bitwise(_bool_of(other), Op.AND, "logical_and")

    def logical_or(self, other) -> "Tensor":
        return self.bool()._bitwise(_bool_of(other), Op.OR, "logical_or")

    def logical_xor(self, other) -> "Tensor":
        return self.bool()._bitwise(_bool_of(other), Op.XOR, "logical_xor")

    def bitwise_and(self, o):
        return self._bitwise(o, Op.AND, "bitwise_and")

    def bitwise_or(self, o):
        return self._bitwise(o, Op.OR, "bitwise_or")

    def bitwise_xor(self, o):
        return self._bitwise(o, Op.XOR, "bitwise_xor")

    def bitwise_not(self) -> "Tensor":
        if self.dtype.is_bool:
            return self.logical_not()
        return self.bitwise_xor(-1 if self.dtype.kind == "i" else dtypes.max_value(self.dtype))

    def __lshift__(self, o):
        return self._bitwise(o, Op.SHL, "bitwise_left_shift")

    def __rshift__(self, o):
        return self._bitwise(o, Op.SHR, "bitwise_right_shift")

    def __invert__(self):
        return self.bitwise_not()

    def isnan(self) -> "Tensor":
        return self != self

    def isinf(self) -> "Tensor":
        return self.abs() == math.inf if self.dtype.is_float else self._const(False, dtypes.bool_)

    def isfinite(self) -> "Tensor":
        return (self.isnan().logical_or(self.isinf())).logical_not()

    # ---- unary math ---------------------------------------------------------------------
    def _float_unary(self, fn_cls) -> "Tensor":
        x = self if self.dtype.is_float else self.float()
        return Tensor._apply(fn_cls, x)

    def exp2(self):
        return self._float_unary(F.Exp2)

    def log2(self):
        return self._float_unary(F.Log2)

    def exp(self):
        return (self._floaty() * LOG2E).exp2()

    def log(self):
        return self.log2() * LN2

    def log10(self):
        return self.log2() * (LN2 / math.log(10))

    def log1p(self):
        return (self + 1).log()

    def expm1(self):
        return self.exp() - 1

    def sqrt(self):
        return self._float_unary(F.Sqrt)

    def rsqrt(self):
        return self.sqrt().reciprocal()

    def sin(self):
        return self._float_unary(F.Sin)

    def cos(self):
        return (math.pi / 2 - self._floaty()).sin()

    def tan(self):
        return self.sin() / self.cos()

    def tanh(self):
        return 2 * (2 * self._floaty()).sigmoid() - 1

    def sigmoid(self):
        return self._float_unary(F.Sigmoid)

    def erf(self):
        return self._float_unary(F.Erf)

    def relu(self):
        return self.maximum(0) if not self.requires_grad else Tensor._apply(F.Relu, self)

    def abs(self):
        if self.dtype.is_bool:
            return self
        if self.dtype.kind == "u":
            return self
        return self.maximum(-self)  # tie rule gives PyTorch's zero gradient at 0

    def sign(self):
        if self.dtype.is_bool:
            return self
        return (self > 0).cast(self.dtype) - (self < 0).cast(self.dtype) + self._ste()

    def square(self):
        return self * self

    def trunc(self):
        if not self.dtype.is_float:
            return self
        return Tensor._wrap(self.lazydata.alu(Op.TRUNC)) + self._ste()

    def floor(self):
        t = self.trunc()
        return t - (t > self).cast(self.dtype) if self.dtype.is_float else self

    def ceil(self):
        t = self.trunc()
        return t + (t < self).cast(self.dtype) if self.dtype.is_float else self

    def round(self):
        """Round half to even, like torch.round."""
        if not self.dtype.is_float:
            return self
        f = self.floor()
        diff = self - f
        up = (diff > 0.5).logical_or((diff == 0.5).logical_and((f * 0.5).floor() * 2 != f))
        return f + up.cast(self.dtype)

    def frac(self):
        return self - self.trunc()

    def _ste(self) -> "Tensor":
        """Zero with this tensor's graph: rounding ops have zero gradient."""
        if not self.requires_grad:
            return self._const(0)
        return self * 0

    def _floaty(self) -> "Tensor":
        return self if self.dtype.is_float else self.float()

    def _wide(self) -> "Tensor":
        """self in float32 where it is float16 or bfloat16: PyTorch computes a softmax or a
        variance of a half-precision tensor in float32 and rounds the result once (in half
        precision, each of the max, the exps, the sum and the quotient rounds: twice the
        error)."""
        return self.float() if self.dtype in (dtypes.float16, dtypes.bfloat16) else self

    def lerp(self, end, weight):
        return self + (end - self) * weight

    # ---- reductions ---------------------------------------------------------------------
    def _axes(self, dim, op: str) -> tuple:
        if dim is None:
            return tuple(range(self.ndim))
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        return tuple(sorted({_norm_dim(d, self.ndim, op) for d in dims}))

    def _reduce(self, fn_cls, dim, keepdim: bool, op: str) -> "Tensor":
        axes = self._axes(dim, op)
        if self.ndim == 0:
            return self
        out = Tensor._apply(fn_cls, self, axes=axes)
        if keepdim:
            return out
        return out.reshape(tuple(s for i, s in enumerate(self.shape) if i not in axes))

    def sum(self, dim=None, keepdim: bool = False, dtype=None) -> "Tensor":
        x = self
        if dtype is not None:
            x = x.cast(dtype)
        elif not x.dtype.is_float:
            x = x.cast(dtypes.int64)
        elif x.dtype.itemsize < 4:  # accumulate half precision in float32, like PyTorch
            return x.float().sum(dim, keepdim).cast(x.dtype)
        return x._reduce(F.Sum, dim, keepdim, "sum")

    def mean(self, dim=None, keepdim: bool = False, dtype=None) -> "Tensor":
        x = self.cast(dtype) if dtype is not None else self
        if not x.dtype.is_float:
            raise RuntimeError(f"mean(): could not infer output dtype. Input dtype must be either a floating point "
                               f"or complex dtype. Got: {x.dtype}; use .float() first")
        axes = x._axes(dim, "mean")
        n = prod(x.shape[a] for a in axes) if x.ndim else 1
        return x.sum(dim, keepdim) * (1 / n if n else math.nan)

    def amax(self, dim=None, keepdim: bool = False) -> "Tensor":
        if self.numel() == 0 and (dim is None or any(self.shape[a] == 0 for a in self._axes(dim, "amax"))):
            raise IndexError("amax(): expected reduction dim to have a non-zero size; cannot take the max of an empty tensor")
        if self.dtype.is_bool:
            return self.cast(dtypes.uint8).amax(dim, keepdim).bool()
        return self._reduce(F.Max, dim, keepdim, "amax")

    def amin(self, dim=None, keepdim: bool = False) -> "Tensor":
        if self.dtype.is_bool or self.dtype.kind == "u":
            x = self.cast(dtypes.int64)
            return (-((-x).amax(dim, keepdim))).cast(self.dtype)
        return -((-self).amax(dim, keepdim))

    def max(self, dim=None, keepdim: bool = False):
        if isinstance(dim, Tensor):
            return self.maximum(dim)
        if dim is None:
            return self.amax()
        return _values_at(self, self.argmax(dim, keepdim=True), dim, keepdim)

    def min(self, dim=None, keepdim: bool = False):
        if isinstance(dim, Tensor):
            return self.minimum(dim)
        if dim is None:
            return self.amin()
        return _values_at(self, self.argmin(dim, keepdim=True), dim, keepdim)

    def argmax(self, dim=None, keepdim: bool = False) -> "Tensor":
        """Index of the first maximal element, like PyTorch."""
        if dim is None:
            out = self.reshape(-1).argmax(0)
            return out.reshape([1] * self.ndim) if keepdim else out
        d = _norm_dim(dim, self.ndim, "argmax")
        x = self.detach()
        if x.ndim == 0:
            return Tensor._wrap(LazyBuffer.const(0, dtypes.int64, (), self.device))
        n = x.shape[d]
        m = x.amax(d, keepdim=True)
        hit = (x == m).logical_or(x.isnan()) if x.dtype.is_float else x == m
        shape = [1] * x.ndim
        shape[d] = n
        rev = (n - arange(n, device=x.device, dtype=dtypes.int64)).reshape(shape)
        first = (where(hit, rev, 0)).amax(d, keepdim=keepdim)
        return n - first

    def argmin(self, dim=None, keepdim: bool = False) -> "Tensor":
        x = self.detach()
        if x.dtype.is_bool or x.dtype.kind == "u":
            x = x.cast(dtypes.int64)
        return (-x).argmax(dim, keepdim)

    def prod(self, dim=None, keepdim: bool = False, dtype=None) -> "Tensor":
        """Exact (pairwise multiplication by halving), so integer products stay exact."""
        x = self.cast(dtype) if dtype is not None else (self if self.dtype.is_float else self.cast(dtypes.int64))
        if dim is None:
            out = x.reshape(-1).prod(0)
            return out.reshape([1] * x.ndim) if keepdim else out
        d = _norm_dim(dim, x.ndim, "prod")
        x = x.movedim(d, -1)
        while x.shape[-1] > 1:
            n = x.shape[-1]
            if n % 2:
                x = x.pad((0, 1), value=1)
                n += 1
            x = x[..., : n // 2] * x[..., n // 2:]
        if x.shape[-1] == 0:
            x = x.pad((0, 1), value=1)
        x = x.movedim(-1, d)
        return x if keepdim else x.squeeze(d)

    def var(self, dim=None, unbiased: bool | None = None, keepdim: bool = False, correction=None) -> "Tensor":
        corr = 1 if correction is None and unbiased in (None, True) else (0 if correction is None else correction)
        axes = self._axes(dim, "var")
        n = prod(self.shape[a] for a in axes) if self.ndim else 1
        x = self._wide()
        diff = x - x.mean(axes, keepdim=True)
        out = (diff * diff).sum(axes, keepdim) * (1 / max(n - corr, 0) if n - corr > 0 else math.nan)
        return out.cast(self.dtype) if x is not self else out

    def std(self, dim=None, unbiased: bool | None = None, keepdim: bool = False, correction=None) -> "Tensor":
        return _sqrt_zero_grad_at_zero(self.var(dim, unbiased, keepdim, correction))

    def var_mean(self, dim=None, correction=1, keepdim=False):
        return self.var(dim, keepdim=keepdim, correction=correction), self.mean(dim, keepdim)

    def logsumexp(self, dim=None, keepdim: bool = False) -> "Tensor":
        x = self._floaty()
        m = x.amax(dim, keepdim=True).detach()
        m = where(m.isinf(), 0.0, m)
        out = (x - m).exp().sum(dim, keepdim=True).log() + m
        return out if keepdim else out.squeeze(x._axes(dim, "logsumexp") if x.ndim else None)

    def softmax(self, dim: int = -1, dtype=None) -> "Tensor":
        x = self.cast(dtype) if dtype is not None else self._floaty()
        with F.no_grad():
            w = x._wide()
            e = (w - w.amax(dim, keepdim=True)).exp()
            out = (e / e.sum(dim, keepdim=True)).cast(x.dtype)
        return x._softmax_of(out, dim)

    def _softmax_of(self, out: "Tensor", dim: int) -> "Tensor":
        """`out`, a softmax of self along dim computed without grad, with the softmax's
        gradient taken from `out` itself (autograd.Softmax)."""
        axes = (_norm_dim(dim, self.ndim, "softmax"),) if self.ndim else ()  # a 0-d softmax is 1
        return Tensor._apply(F.Softmax, self, out=out.lazydata, axes=axes)

    def log_softmax(self, dim: int = -1, dtype=None) -> "Tensor":
        x = self.cast(dtype) if dtype is not None else self._floaty()
        w = x._wide()
        m = w.amax(dim, keepdim=True).detach()
        shifted = w - where(m.isinf(), 0.0, m)  # exact for the max itself, unlike x - logsumexp
        return (shifted - shifted.exp().sum(dim, keepdim=True).log()).cast(x.dtype)

    def cumsum(self, dim: int, dtype=None) -> "Tensor":
        x = self.cast(dtype) if dtype is not None else (self if self.dtype.is_float else self.cast(dtypes.int64))
        d = _norm_dim(dim, x.ndim, "cumsum")
        if x.ndim == 0:
            return x
        n = x.shape[d]
        x = x.movedim(d, -1)
        tri = ones(n, n, dtype=dtypes.bool_, device=x.device).tril()  # tri[i, j] = j <= i
        out = where(tri, x.unsqueeze(-2), 0).sum(-1)
        return out.movedim(-1, d).cast(x.dtype)

    def cumprod(self, dim: int) -> "Tensor":
        d = _norm_dim(dim, self.ndim, "cumprod")
        n = self.shape[d]
        x = self.movedim(d, -1)
        tri = ones(n, n, dtype=dtypes.bool_, device=x.device).tril()
        out = where(tri, x.unsqueeze(-2), 1).prod(-1)
        return out.movedim(-1, d)

    def all(self, dim=None, keepdim: bool = False) -> "Tensor":
        out = self.bool().logical_not().any(dim, keepdim).logical_not()
        return out.cast(dtypes.uint8) if self.dtype is dtypes.uint8 else out  # torch keeps uint8

    def any(self, dim=None, keepdim: bool = False) -> "Tensor":
        hit = self != 0
        if self.numel() == 0:  # amax has no identity on empty input; a count does
            out = hit.sum(dim, keepdim) > 0
        else:
            out = hit.cast(dtypes.uint8).amax(dim, keepdim).bool()
        return out.cast(dtypes.uint8) if self.dtype is dtypes.uint8 else out  # torch keeps uint8

    def norm(self, p=2, dim=None, keepdim: bool = False) -> "Tensor":
        if p == 2 or p == "fro":
            return _sqrt_zero_grad_at_zero((self * self).sum(dim, keepdim))
        if p == 1:
            return self.abs().sum(dim, keepdim)
        if p == math.inf:
            return self.abs().amax(dim, keepdim)
        return (self.abs() ** p).sum(dim, keepdim) ** (1 / p)

    # ---- shape ---------------------------------------------------------------------------
    def reshape(self, *shape) -> "Tensor":
        shape = _shape_arg(shape)
        n = self.numel()
        if sum(1 for s in shape if s == -1) > 1:
            raise RuntimeError(f"reshape: only one dimension can be inferred, got shape {tuple(shape)}")
        if -1 in shape:
            known = prod(s for s in shape if s != -1)
            if known == 0 or n % known:
                raise RuntimeError(f"reshape: shape {tuple(shape)} is invalid for input of size {n}")
            shape = tuple(n // known if s == -1 else s for s in shape)
        if any(s < 0 for s in shape) or prod(shape) != n:
            raise RuntimeError(f"reshape: shape {tuple(shape)} is invalid for input of size {n} "
                               f"(input shape {tuple(self.shape)})")
        if tuple(shape) == tuple(self.shape):
            return self
        return Tensor._apply(F.Reshape, self, shape=tuple(shape))

    view = reshape

    def view_as(self, other: "Tensor") -> "Tensor":
        return self.reshape(other.shape)

    def reshape_as(self, other: "Tensor") -> "Tensor":
        return self.reshape(other.shape)

    def permute(self, *dims) -> "Tensor":
        dims = _shape_arg(dims)
        if len(dims) != self.ndim:
            raise RuntimeError(f"permute: number of dims don't match: got {len(dims)} dims for a tensor of shape "
                               f"{tuple(self.shape)}")
        order = tuple(_norm_dim(d, self.ndim, "permute") for d in dims)
        if sorted(order) != list(range(self.ndim)):
            raise RuntimeError(f"permute: repeated dim in {tuple(dims)}")
        return Tensor._apply(F.Permute, self, order=order) if order != tuple(range(self.ndim)) else self

    def transpose(self, dim0: int, dim1: int) -> "Tensor":
        if self.ndim < 2 and dim0 in (0, -1) and dim1 in (0, -1):
            return self
        order = list(range(self.ndim))
        a, b = _norm_dim(dim0, self.ndim, "transpose"), _norm_dim(dim1, self.ndim, "transpose")
        order[a], order[b] = order[b], order[a]
        return self.permute(order)

    swapaxes = swapdims = transpose

    def t(self) -> "Tensor":
        if self.ndim > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {self.ndim}D")
        return self.transpose(0, 1) if self.ndim == 2 else self

    @property
    def T(self) -> "Tensor":
        return self.permute(tuple(reversed(range(self.ndim))))

    @property
    def mT(self) -> "Tensor":
        return self.transpose(-2, -1)

    def movedim(self, source: int, destination: int) -> "Tensor":
        s, d = _norm_dim(source, self.ndim, "movedim"), _norm_dim(destination, self.ndim, "movedim")
        order = [i for i in range(self.ndim) if i != s]
        order.insert(d, s)
        return self.permute(order)

    moveaxis = movedim

    def expand(self, *shape) -> "Tensor":
        shape = _shape_arg(shape)
        if len(shape) < self.ndim:
            raise RuntimeError(f"expand: the number of sizes provided ({len(shape)}) must be greater or equal to the "
                               f"number of dimensions in the tensor ({self.ndim})")
        cur = (1,) * (len(shape) - self.ndim) + tuple(self.shape)
        new = tuple(c if s == -1 else s for s, c in zip(shape, cur))
        for i, (c, s) in enumerate(zip(cur, new)):
            if c != s and c != 1:
                raise RuntimeError(f"expand: the expanded size of the tensor ({s}) must match the existing size ({c}) "
                                   f"at non-singleton dimension {i}. Target sizes: {list(shape)}. "
                                   f"Tensor sizes: {list(self.shape)}")
        return self._broadcast_to(new)

    def expand_as(self, other: "Tensor") -> "Tensor":
        return self.expand(other.shape)

    def broadcast_to(self, shape) -> "Tensor":
        return self.expand(shape)

    def squeeze(self, dim=None) -> "Tensor":
        if dim is None:
            return self.reshape(tuple(s for s in self.shape if s != 1))
        dims = self._axes(dim, "squeeze")
        return self.reshape(tuple(s for i, s in enumerate(self.shape) if not (i in dims and s == 1)))

    def unsqueeze(self, dim: int) -> "Tensor":
        d = _norm_dim(dim, self.ndim + 1, "unsqueeze")
        shape = list(self.shape)
        shape.insert(d, 1)
        return self.reshape(shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> "Tensor":
        if self.ndim == 0:
            return self.reshape(1)
        s, e = _norm_dim(start_dim, self.ndim, "flatten"), _norm_dim(end_dim, self.ndim, "flatten")
        if s > e:
            raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
        return self.reshape(tuple(self.shape[:s]) + (-1 if self.numel() else prod(self.shape[s:e + 1]),)
                            + tuple(self.shape[e + 1:]))

    def unflatten(self, dim: int, sizes) -> "Tensor":
        d = _norm_dim(dim, self.ndim, "unflatten")
        return self.reshape(tuple(self.shape[:d]) + tuple(sizes) + tuple(self.shape[d + 1:]))

    def flip(self, *dims) -> "Tensor":
        dims = _shape_arg(dims)
        axes = tuple(_norm_dim(d, self.ndim, "flip") for d in dims)
        return Tensor._apply(F.Flip, self, axes=axes) if axes else self

    def _pad_raw(self, arg: tuple) -> "Tensor":
        return Tensor._apply(F.Pad, self, arg=arg)

    def _shrink(self, arg: tuple) -> "Tensor":
        return Tensor._apply(F.Shrink, self, arg=arg)

    def pad(self, pad: Sequence[int], mode: str = "constant", value: float = 0.0) -> "Tensor":
        """torch.nn.functional.pad: `pad` lists (left, right) pairs from the last dim backwards."""
        from .frontend.windows import pad as _pad
        return _pad(self, pad, mode, value)

    def tril(self, diagonal: int = 0) -> "Tensor":
        return where(_tri_mask(self, diagonal, lower=True), self, self._const(0))

    def triu(self, diagonal: int = 0) -> "Tensor":
        return where(_tri_mask(self, diagonal, lower=False), self, self._const(0))

    def repeat(self, *sizes) -> "Tensor":
        sizes = _shape_arg(sizes)
        if len(sizes) < self.ndim:
            raise RuntimeError("repeat: number of repeat dims can not be smaller than number of tensor dims")
        x = self.reshape((1,) * (len(sizes) - self.ndim) + tuple(self.shape))
        expanded = []
        for s in x.shape:
            expanded += [1, s]
        x = x.reshape(expanded).expand([v for r, s in zip(sizes, x.shape) for v in (r, s)])
        return x.reshape([r * s for r, s in zip(sizes, self.reshape((1,) * (len(sizes) - self.ndim)
                                                                    + tuple(self.shape)).shape)])

    def repeat_interleave(self, repeats: int, dim=None) -> "Tensor":
        x = self.reshape(-1) if dim is None else self
        d = 0 if dim is None else _norm_dim(dim, x.ndim, "repeat_interleave")
        x = x.unsqueeze(d + 1)
        shape = list(x.shape)
        shape[d + 1] = repeats
        x = x.expand(shape)
        return x.flatten(d, d + 1)

    def split(self, split_size, dim: int = 0) -> tuple:
        d = _norm_dim(dim, self.ndim, "split")
        n = self.shape[d]
        if isinstance(split_size, int):
            if split_size <= 0:
                raise RuntimeError(f"split: split_size must be positive, got {split_size}")
            sizes = [min(split_size, n - i) for i in range(0, n, split_size)] or [0]
        else:
            sizes = list(split_size)
            if sum(sizes) != n:
                raise RuntimeError(f"split: split sizes {sizes} must sum to the dim size {n}")
        out, start = [], 0
        for s in sizes:
            out.append(self.narrow(d, start, s))
            start += s
        return tuple(out)

    def chunk(self, chunks: int, dim: int = 0) -> tuple:
        n = self.shape[_norm_dim(dim, self.ndim, "chunk")]
        return self.split(max(1, -(-n // chunks)), dim)

    def unbind(self, dim: int = 0) -> tuple:
        d = _norm_dim(dim, self.ndim, "unbind")
        return tuple(t.squeeze(d) for t in self.split(1, d))

    def narrow(self, dim: int, start: int, length: int) -> "Tensor":
        d = _norm_dim(dim, self.ndim, "narrow")
        n = self.shape[d]
        if start < 0:
            start += n
        if not (0 <= start and start + length <= n and length >= 0):
            raise IndexError(f"narrow: start ({start}) + length ({length}) exceeds dimension size ({n}) of dim {d}")
        arg = tuple((start, start + length) if i == d else (0, s) for i, s in enumerate(self.shape))
        return self._shrink(arg)

    # ---- delegated: frontend/indexing.py, frontend/linalg.py, frontend/windows.py ------------
    def __getitem__(self, key) -> "Tensor":
        from .frontend import indexing
        return indexing.getitem(self, key)

    def __setitem__(self, key, value) -> None:
        from .frontend import indexing
        indexing.setitem(self, key, value)

    def gather(self, dim: int, index: "Tensor") -> "Tensor":
        from .frontend import indexing
        return indexing.gather(self, dim, index)

    def scatter_add(self, dim: int, index: "Tensor", src: "Tensor") -> "Tensor":
        from .frontend import indexing
        return indexing.scatter_add(self, dim, index, src)

    def index_select(self, dim: int, index: "Tensor") -> "Tensor":
        from .frontend import indexing
        return indexing.index_select(self, dim, index)

    def masked_fill(self, mask: "Tensor", value) -> "Tensor":
        from .frontend import indexing
        return indexing.masked_fill(self, mask, value)

    def scatter(self, dim: int, index: "Tensor", src) -> "Tensor":
        from .frontend import indexing
        return indexing.scatter(self, dim, index, src)

    def take_along_dim(self, indices: "Tensor", dim: int | None = None) -> "Tensor":
        from .frontend import indexing
        return indexing.take_along_dim(self, indices, dim)

    def nonzero(self, as_tuple: bool = False):
        from .frontend import indexing
        return indexing.nonzero(self, as_tuple)

    def masked_select(self, mask: "Tensor") -> "Tensor":
        from .frontend import indexing
        return indexing.masked_select(self, mask)

    def matmul(self, other: "Tensor") -> "Tensor":
        from .frontend import linalg
        return linalg.matmul(self, other)

    def __matmul__(self, other):
        return self.matmul(other)

    def __rmatmul__(self, other):
        from .frontend import linalg
        return linalg.matmul(other, self)

    def mm(self, other: "Tensor") -> "Tensor":
        from .frontend import linalg
        return linalg.mm(self, other)

    def bmm(self, other: "Tensor") -> "Tensor":
        from .frontend import linalg
        return linalg.bmm(self, other)

    def dot(self, other: "Tensor") -> "Tensor":
        from .frontend import linalg
        return linalg.dot(self, other)

    def unfold(self, dimension: int, size: int, step: int) -> "Tensor":
        """Tensor.unfold: sliding windows of `size` every `step` along `dimension` (a view)."""
        from .frontend import windows
        return windows.unfold_dim(self, dimension, size, step)

    # ---- in-place ops (PyTorch's trailing underscore) ---------------------------------------
    def _inplace(self, result: "Tensor") -> "Tensor":
        if self.requires_grad and self.is_leaf and F.is_grad_enabled():
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation; "
                               "wrap the update in `with luban.no_grad():`")
        if tuple(result.shape) != tuple(self.shape):
            raise RuntimeError(f"in-place op: output shape {tuple(result.shape)} doesn't match the broadcast shape "
                               f"{tuple(self.shape)}")
        result = result.cast(self.dtype)
        self.lazydata = result.lazydata
        if not self.is_leaf or (result.requires_grad and F.is_grad_enabled()):
            self._ctx, self.requires_grad = result._ctx, result.requires_grad or self.requires_grad
            if self._ctx is not None:  # (earlier uses of self keep the Function they recorded)
                self._ctx.output = weakref.ref(self)
        return self

    def _snapshot(self) -> "Tensor":
        """The value before an in-place op, so autograd never sees a cycle."""
        t = Tensor._wrap(self.lazydata, self._ctx, self.requires_grad)
        return t

    def add_(self, other, alpha=1):
        return self._inplace(self._snapshot().add(other, alpha=alpha))

    def sub_(self, other, alpha=1):
        return self._inplace(self._snapshot().sub(other, alpha=alpha))

    def mul_(self, other):
        return self._inplace(self._snapshot() * other)

    def div_(self, other):
        return self._inplace(self._snapshot() / other)

    def pow_(self, e):
        return self._inplace(self._snapshot() ** e)

    def clamp_(self, min=None, max=None):
        return self._inplace(self._snapshot().clamp(min, max))

    def zero_(self):
        return self._inplace(self._const(0))

    def fill_(self, value):
        return self._inplace(self._const(value))

    def copy_(self, src):
        src = _as_tensor(src, self)
        return self._inplace(src.to(self.device)._broadcast_to(tuple(self.shape)))

    def neg_(self):
        return self._inplace(-self._snapshot())

    def exp_(self):
        return self._inplace(self._snapshot().exp())

    def sqrt_(self):
        return self._inplace(self._snapshot().sqrt())

    def relu_(self):
        return self._inplace(self._snapshot().relu())

    def masked_fill_(self, mask, value):
        return self._inplace(self._snapshot().masked_fill(mask, value))

    def lerp_(self, end, weight):
        return self._inplace(self._snapshot().lerp(end, weight))

    def addcmul_(self, t1, t2, value=1):
        return self._inplace(self._snapshot() + t1 * t2 * value)

    def addcdiv_(self, t1, t2, value=1):
        return self._inplace(self._snapshot() + t1 / t2 * value)

    # random fills realize at once: a parameter left as a lazy random graph would be
    # recomputed by every kernel that reads it
    def uniform_(self, a=0.0, b=1.0):
        from .frontend.random import rand
        return self._inplace(rand(*self.shape, dtype=self.dtype, device=self.device) * (b - a) + a).realize()

    def normal_(self, mean=0.0, std=1.0):
        from .frontend.random import randn
        return self._inplace(randn(*self.shape, dtype=self.dtype, device=self.device) * std + mean).realize()

    # ---- operators ------------------------------------------------------------------------
    def __add__(self, o):
        return self.add(o)

    def __radd__(self, o):
        a, b = self._operands(o, "add", reverse=True)
        return Tensor._apply(F.Add, a, b)

    def __sub__(self, o):
        return self.sub(o)

    def __rsub__(self, o):
        return self.rsub(o)

    def __mul__(self, o):
        return self.mul(o)

    def __rmul__(self, o):
        a, b = self._operands(o, "mul", reverse=True)
        return a.mul(b)

    def __truediv__(self, o):
        return self.div(o)

    def __rtruediv__(self, o):
        dt = _result_dtype(self, o)
        a, b = self._operands(o, "div", reverse=True, dtype=dt if dt.is_float else dtypes.default_float)
        return a.div(b)

    def __floordiv__(self, o):
        return self.floor_divide(o)

    def __rfloordiv__(self, o):
        a, b = self._operands(o, "floor_divide", reverse=True)
        return a.floor_divide(b)

    def __mod__(self, o):
        return self.remainder(o)

    def __rmod__(self, o):
        a, b = self._operands(o, "remainder", reverse=True)
        return a.remainder(b)

    def __neg__(self):
        return self.neg()

    def __pos__(self):
        return self

    def __abs__(self):
        return self.abs()

    def __and__(self, o):
        return self.bitwise_and(o)

    def __or__(self, o):
        return self.bitwise_or(o)

    def __xor__(self, o):
        return self.bitwise_xor(o)

    __rand__, __ror__, __rxor__ = __and__, __or__, __xor__

    def __iadd__(self, o):
        return self.add_(o)

    def __isub__(self, o):
        return self.sub_(o)

    def __imul__(self, o):
        return self.mul_(o)

    def __itruediv__(self, o):
        return self.div_(o)


class Size(tuple):
    """torch.Size: a tuple that prints like PyTorch's."""

    def __repr__(self) -> str:
        return f"luban.Size({list(self)})"

    def numel(self) -> int:
        return prod(self)


class MinMax(tuple):
    """(values, indices) as returned by max(dim) / min(dim)."""

    def __new__(cls, values, indices):
        return super().__new__(cls, (values, indices))

    @property
    def values(self):
        return self[0]

    @property
    def indices(self):
        return self[1]


def _from_pickle(array, dtype_name, device, requires_grad):
    from .runtime import available_devices
    if device not in available_devices():
        device = None
    return Tensor(array, dtype=dtype_name, device=device, requires_grad=requires_grad)


def _values_at(x: "Tensor", idx: "Tensor", dim: int, keepdim: bool) -> MinMax:
    """(values, indices) of max/min(dim): values gathered at the index so the gradient
    flows to that one element, as in torch (amax splits it among ties instead)."""
    d = _norm_dim(dim, x.ndim, "max")
    if x.ndim == 0:
        return MinMax(x, idx.reshape(()))
    vals = x.gather(d, idx)
    if not keepdim:
        vals, idx = vals.squeeze(d), idx.squeeze(d)
    return MinMax(vals, idx)


def _is_dtype_name(s: str) -> bool:
    try:
        dtypes.get_dtype(s)
        return True
    except TypeError:
        return False


def _shape_arg(shape) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, Size)):
        shape = shape[0]
    return tuple(int(s) for s in shape)


def _promote_tensors(a: Tensor, b: Tensor) -> DType:
    """0-d tensors act like scalars unless they are of a higher category (PyTorch rule)."""
    if (a.ndim == 0) != (b.ndim == 0):
        dim_t, zero_t = (a, b) if b.ndim == 0 else (b, a)
        if zero_t.dtype.is_float and not dim_t.dtype.is_float:
            return zero_t.dtype
        if zero_t.dtype.is_int and dim_t.dtype.is_bool:
            return zero_t.dtype
        return dim_t.dtype
    return dtypes.promote(a.dtype, b.dtype)


def _result_dtype(t: Tensor, other) -> DType:
    if isinstance(other, Tensor):
        return _promote_tensors(t, other)
    return dtypes.promote_with_scalar(t.dtype, other)


def _as_tensor(x, like: Tensor, like_dtype: bool = True) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, Scalar):
        dt = like.dtype if like_dtype else dtypes.promote_with_scalar(dtypes.bool_, x)
        return Tensor._wrap(LazyBuffer.const(x, dt, (), like.device))
    return Tensor(x, device=like.device)


def _bool_of(x):
    if isinstance(x, Tensor):
        return x.bool()
    return bool(x)


def _sqrt_zero_grad_at_zero(x: Tensor) -> Tensor:
    """sqrt whose gradient at 0 is 0 (torch's rule for norm/std), not inf * 0 = nan."""
    zero = x == 0
    return where(zero, 0.0, where(zero, 1.0, x).sqrt())


def _int_pow(x: Tensor, e: int) -> Tensor:
    out, base = None, x
    while e:
        if e & 1:
            out = base if out is None else out * base
        e >>= 1
        if e:
            base = base * base
    return out if out is not None else x._const(1)


def _tri_mask(x: Tensor, diagonal: int, lower: bool) -> Tensor:
    if x.ndim < 2:
        raise RuntimeError(f"tril/triu: input tensor must have at least 2 dimensions, got shape {tuple(x.shape)}")
    r, c = x.shape[-2], x.shape[-1]
    # 32-bit indices where they fit: the mask is computed in the kernel that reads it, whose
    # float lanes then match the index lanes (a causal softmax row reduce vectorizes 2x wider)
    idx = dtypes.int32 if max(r, c) + abs(diagonal) < 2 ** 31 else dtypes.int64
    rows = arange(r, device=x.device, dtype=idx).reshape(r, 1)
    cols = arange(c, device=x.device, dtype=idx).reshape(1, c)
    m = (cols - rows <= diagonal) if lower else (cols - rows >= diagonal)
    return m.expand(x.shape)


def where(condition, input, other) -> Tensor:
    """torch.where(condition, input, other), with broadcasting and promotion."""
    if not isinstance(condition, Tensor):
        raise TypeError(f"where: condition must be a Tensor, got {type(condition).__name__}")
    cond = condition if condition.dtype.is_bool else condition.bool()
    ref = input if isinstance(input, Tensor) else other if isinstance(other, Tensor) else cond
    if isinstance(input, Tensor) and isinstance(other, Tensor):
        dt = _promote_tensors(input, other)
    elif isinstance(input, Tensor):
        dt = dtypes.promote_with_scalar(input.dtype, other)
    elif isinstance(other, Tensor):
        dt = dtypes.promote_with_scalar(other.dtype, input)
    else:
        dt = dtypes.promote_with_scalar(dtypes.promote_with_scalar(dtypes.bool_, input), other)
    a = input.cast(dt) if isinstance(input, Tensor) else Tensor._wrap(LazyBuffer.const(input, dt, (), ref.device))
    b = other.cast(dt) if isinstance(other, Tensor) else Tensor._wrap(LazyBuffer.const(other, dt, (), ref.device))
    for t in (a, b):
        if t.device != cond.device:
            raise RuntimeError(f"where: expected all tensors to be on the same device, but found {cond.device} and "
                               f"{t.device}")
    shape = broadcast_shape(cond.shape, a.shape, b.shape, op="where")
    return Tensor._apply(F.Where, cond._broadcast_to(shape), a._broadcast_to(shape), b._broadcast_to(shape))


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    if end is None:
        start, end = 0, start
    is_float = any(isinstance(v, float) for v in (start, end, step))
    dtype = dtypes.get_dtype(dtype) if dtype is not None else (dtypes.default_float if is_float else dtypes.int64)
    if step == 0:
        raise RuntimeError("arange: step must be nonzero")
    if (end - start) * step < 0:
        raise RuntimeError(f"arange: upper bound and lower bound inconsistent with step sign "
                           f"(start={start}, end={end}, step={step})")
    n = max(0, math.ceil((end - start) / step))
    device = default_device() if device is None else canonical_device(device)
    idx = Tensor._wrap(LazyBuffer.iota(n, dtypes.int64 if not is_float else dtypes.float64, device))
    out = (idx * step + start) if (step != 1 or start != 0) else idx
    out = out.cast(dtype)
    return out.requires_grad_() if requires_grad else out


def ones(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return full(_shape_arg(size), 1, dtype=dtypes.default_float if dtype is None else dtype, device=device, requires_grad=requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    dtype = dtypes.get_dtype(dtype) if dtype is not None else dtypes.promote_with_scalar(dtypes.bool_, fill_value)
    device = default_device() if device is None else canonical_device(device)
    size = _shape_arg(size if isinstance(size, (tuple, list)) else (size,))
    if any(s < 0 for s in size):
        raise RuntimeError(f"full: negative dimension in size {size}")
    t = Tensor._wrap(LazyBuffer.const(fill_value, dtype, size, device))
    return t.requires_grad_() if requires_grad else t
