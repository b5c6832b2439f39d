"""Tensor creation functions (torch.zeros, torch.linspace, ...)."""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..runtime import canonical_device, default_device
from ..tensor import Tensor, _shape_arg, arange, full, ones, where  # noqa: F401  (re-exported)


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def as_tensor(data, dtype=None, device=None) -> Tensor:
    if isinstance(data, Tensor):
        return data.to(device or data.device, dtype or data.dtype)
    return Tensor(data, dtype=dtype, device=device)


def from_numpy(a: np.ndarray) -> Tensor:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"from_numpy: expected np.ndarray, got {type(a).__name__}")
    return Tensor(a)


def zeros(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return full(_shape_arg(size), 0, dtype=dtypes.default_float if dtype is None else dtype, device=device, requires_grad=requires_grad)


def empty(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return zeros(*size, dtype=dtype, device=device, requires_grad=requires_grad)


def zeros_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return zeros(*t.shape, dtype=t.dtype if dtype is None else dtype, device=device or t.device, requires_grad=requires_grad)


def ones_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return ones(*t.shape, dtype=t.dtype if dtype is None else dtype, device=device or t.device, requires_grad=requires_grad)


def full_like(t: Tensor, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return full(tuple(t.shape), fill_value, dtype=t.dtype if dtype is None else dtype, device=device or t.device,
                requires_grad=requires_grad)


def empty_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return zeros_like(t, dtype=dtype, device=device, requires_grad=requires_grad)


def linspace(start, end, steps: int, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    if steps < 0:
        raise RuntimeError(f"linspace: number of steps must be non-negative, got {steps}")
    dtype = dtypes.get_dtype(dtype) if dtype is not None else dtypes.default_float
    if steps == 1:
        return full((1,), start, dtype=dtype, device=device, requires_grad=requires_grad)
    step = (end - start) / max(steps - 1, 1)
    i = arange(steps, dtype=dtypes.float64, device=device)
    # fill from both ends, as PyTorch does, so the last value is exactly `end`
    half = steps // 2
    out = where(i < half, i * step + start, end - (steps - 1 - i) * step).cast(dtype)
    return out.requires_grad_() if requires_grad else out


def eye(n: int, m: int | None = None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    m = n if m is None else m
    dtype = dtypes.get_dtype(dtype) if dtype is not None else dtypes.default_float
    device = default_device() if device is None else canonical_device(device)
    r = arange(n, device=device).reshape(n, 1)
    c = arange(m, device=device).reshape(1, m)
    out = (r == c).cast(dtype)
    return out.requires_grad_() if requires_grad else out
