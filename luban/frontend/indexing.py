"""Indexing: slicing, advanced indexing, gather/scatter, cat/stack."""
from __future__ import annotations

from .. import autograd as F
from ..tensor import Tensor, _norm_dim


def cat(tensors, dim: int = 0) -> Tensor:
    tensors = [t for t in tensors]
    if not tensors:
        raise RuntimeError("cat: expected a non-empty list of Tensors")
    d = _norm_dim(dim, tensors[0].ndim, "cat")
    total = sum(t.shape[d] for t in tensors)
    out, start = None, 0
    for t in tensors:
        n = t.shape[d]
        arg = tuple((start, total - start - n) if i == d else (0, 0) for i in range(t.ndim))
        p = Tensor._apply(F.Pad, t, arg=arg)
        out = p if out is None else out + p
        start += n
    return out


def stack(tensors, dim: int = 0) -> Tensor:
    tensors = list(tensors)
    d = _norm_dim(dim, tensors[0].ndim + 1, "stack")
    return cat([t.unsqueeze(d) for t in tensors], d)


def getitem(x: Tensor, key) -> Tensor:
    raise NotImplementedError


def setitem(x: Tensor, key, value) -> None:
    raise NotImplementedError


def gather(x, dim, index):
    raise NotImplementedError


def scatter_add(x, dim, index, src):
    raise NotImplementedError


def index_select(x, dim, index):
    raise NotImplementedError


def masked_fill(x, mask, value):
    raise NotImplementedError
