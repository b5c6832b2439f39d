"""Torch-style free functions (`luban.exp(x)`, `luban.cat([...])`, ...): each forwards to
the Tensor method or frontend module that implements it."""
from __future__ import annotations

from ..tensor import Tensor, where  # noqa: F401
from .indexing import (cat, gather, index_select, masked_fill, masked_select, nonzero, one_hot,  # noqa: F401
                       scatter, scatter_add, stack, take_along_dim)
from .linalg import bmm, dot, einsum, matmul, mm, outer  # noqa: F401

_METHODS = """abs neg exp exp2 log log2 log10 log1p expm1 sqrt rsqrt sin cos tan tanh sigmoid erf relu sign
square trunc floor ceil round frac reciprocal pow maximum minimum clamp clip isnan isinf isfinite
logical_not logical_and logical_or logical_xor bitwise_and bitwise_or bitwise_xor bitwise_not
sum mean amax amin max min argmax argmin prod var std var_mean logsumexp softmax log_softmax cumsum cumprod
all any norm reshape permute transpose swapaxes movedim squeeze unsqueeze flatten unflatten flip
tril triu split chunk unbind narrow repeat_interleave lerp add sub mul div true_divide floor_divide
remainder fmod lt gt le ge eq ne equal t clone detach""".split()


def _forward(name):
    def fn(input, *args, **kwargs):
        if not isinstance(input, Tensor):
            raise TypeError(f"luban.{name}(): argument 'input' must be Tensor, not {type(input).__name__}")
        return getattr(input, name)(*args, **kwargs)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"luban.{name}(input, ...) is Tensor.{name}(...), as in PyTorch."
    return fn


for _n in _METHODS:
    globals()[_n] = _forward(_n)

__all__ = _METHODS + ["where", "cat", "stack", "gather", "index_select", "masked_fill", "scatter_add",
                      "scatter", "take_along_dim", "nonzero", "masked_select", "one_hot",
                      "matmul", "mm", "bmm", "dot", "outer", "einsum"]
