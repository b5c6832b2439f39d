"""interpolate / upsample (torch.nn.functional names) as compositions.

Resizing is separable, so each spatial dim is resampled on its own. Source positions
are computed on the host in float32 with PyTorch's formulas (so they round as PyTorch's
kernels do); a dim is then resampled by the cheapest view that reads those positions:
nothing (identity), an expand (integer upscale), a strided slice (integer downscale),
else one gather. Linear modes are a weighted sum of two such reads.
"""
from __future__ import annotations

import math

import numpy as np

from ...frontend.windows import adaptive_avg_pool1d, adaptive_avg_pool2d
from ...tensor import Tensor

__all__ = ["interpolate", "upsample", "upsample_nearest", "upsample_bilinear"]

_LINEAR = {"linear": 1, "bilinear": 2, "trilinear": 3}
_MODES = ("nearest", "nearest-exact", "area", *_LINEAR)


def interpolate(input: Tensor, size=None, scale_factor=None, mode: str = "nearest", align_corners=None,
                recompute_scale_factor=None, antialias: bool = False) -> Tensor:
    if mode not in _MODES:
        raise NotImplementedError(f"interpolate: mode {mode!r} is not supported; expected one of {', '.join(_MODES)}")
    if mode in _LINEAR:
        align_corners = bool(align_corners)
    elif align_corners is not None:
        raise ValueError("align_corners option can only be set with the interpolating modes: "
                         "linear | bilinear | bicubic | trilinear")
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not supported")
    nd = input.ndim - 2
    if nd not in (1, 2, 3) or (mode in _LINEAR and _LINEAR[mode] != nd) or (mode == "area" and nd == 3):
        raise NotImplementedError(f"interpolate: mode {mode!r} does not take a {input.ndim}D input (shape "
                                  f"{tuple(input.shape)}); linear needs 3D, bilinear 4D, trilinear 5D, "
                                  f"nearest 3D to 5D")
    # area takes integer sizes only: a scale_factor is turned into one, as in PyTorch
    recompute = bool(recompute_scale_factor) or (mode == "area" and size is None)
    out_size, scales = _output_size(input, nd, size, scale_factor, recompute)
    if mode == "area":
        return (adaptive_avg_pool1d if nd == 1 else adaptive_avg_pool2d)(input, out_size)
    x = input
    for i, (o, s) in enumerate(zip(out_size, scales)):
        d, n = 2 + i, input.shape[2 + i]
        if mode in _LINEAR:
            x = _linear_dim(x, d, n, o, s, align_corners)
        else:
            x = _take(x, d, _nearest_index(n, o, s, exact=mode == "nearest-exact"))
    return x


def upsample(input: Tensor, size=None, scale_factor=None, mode: str = "nearest", align_corners=None) -> Tensor:
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input: Tensor, size=None, scale_factor=None) -> Tensor:
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear(input: Tensor, size=None, scale_factor=None) -> Tensor:
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)


def _output_size(x: Tensor, nd: int, size, scale_factor, recompute: bool) -> tuple:
    """(output sizes, scale factors or None per dim): PyTorch's argument rules."""
    spatial = list(x.shape[2:])
    if (size is None) == (scale_factor is None):
        raise ValueError("only one of size or scale_factor should be defined" if size is not None
                         else "either size or scale_factor should be defined")
    if size is not None:
        if recompute:
            raise ValueError("recompute_scale_factor is not meaningful with an explicit size.")
        sizes = list(size) if isinstance(size, (tuple, list)) else [size] * nd
        if len(sizes) != nd:
            raise ValueError(f"Input and output must have the same number of spatial dimensions, but got input with "
                             f"spatial dimensions of {spatial} and output size of {size}.")
        return tuple(int(s) for s in sizes), (None,) * nd
    scales = list(scale_factor) if isinstance(scale_factor, (tuple, list)) else [scale_factor] * nd
    if len(scales) != nd:
        raise ValueError(f"Input and scale_factor must have the same number of spatial dimensions, but got input "
                         f"with spatial dimensions of {spatial} and scale_factor of shape {scale_factor}.")
    out = tuple(int(math.floor(n * float(s))) for n, s in zip(spatial, scales))
    if any(o <= 0 for o in out):
        raise ValueError(f"interpolate: scale_factor {scale_factor} gives an empty output for input of shape "
                         f"{tuple(x.shape)}")
    # recompute: the kernel derives the scale from the integer sizes instead
    return out, (None,) * nd if recompute else tuple(float(s) for s in scales)


def _scale(n: int, o: int, scale) -> np.float32:
    """PyTorch's compute_scales_value: 1 / scale_factor when given, else n / o (float32)."""
    if scale is not None and scale > 0:
        return np.float32(1.0 / scale)
    return np.float32(n) / np.float32(o)


def _nearest_index(n: int, o: int, scale, exact: bool) -> np.ndarray:
    i = np.arange(o, dtype=np.float32)
    if not exact and o == n:
        return np.arange(o)
    if not exact and o == 2 * n:
        return np.arange(o) >> 1
    src = np.floor(((i + np.float32(0.5)) if exact else i) * _scale(n, o, scale))
    return np.minimum(src.astype(np.int64), n - 1)


def _linear_dim(x: Tensor, d: int, n: int, o: int, scale, align_corners: bool) -> Tensor:
    """x resampled along d by linear interpolation between the two nearest inputs."""
    i = np.arange(o, dtype=np.float32)
    if align_corners:
        step = np.float32(n - 1) / np.float32(o - 1) if o > 1 else np.float32(0)
        src = step * i
    else:
        src = np.maximum(_scale(n, o, scale) * (i + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    lo = np.minimum(src.astype(np.int64), n - 1)
    hi = np.where(lo < n - 1, lo + 1, lo)
    w_hi = np.clip(src - lo, 0, 1).astype(np.float32)
    out = _take(x, d, lo)
    if not w_hi.any():
        return out
    shape = [o if k == d else 1 for k in range(x.ndim)]
    w_hi_t = Tensor(w_hi.reshape(shape), dtype=x.dtype, device=x.device)
    return out * (1 - w_hi_t) + _take(x, d, hi) * w_hi_t


def _take(x: Tensor, d: int, idx: np.ndarray) -> Tensor:
    """x.index_select(d, idx), as a view where idx is a simple pattern."""
    n, o = x.shape[d], len(idx)
    if o == n and (idx == np.arange(n)).all():
        return x
    if o % n == 0 and (idx == np.arange(o) // (o // n)).all():  # each input repeated k times
        return x.repeat_interleave(o // n, d)
    step = int(idx[1] - idx[0]) if o > 1 else 1
    if step > 0 and (idx == idx[0] + step * np.arange(o)).all():  # every step-th input
        key = (slice(None),) * d + (slice(int(idx[0]), int(idx[-1]) + 1, step),)
        return x[key]
    return x.index_select(d, Tensor(idx, device=x.device))
