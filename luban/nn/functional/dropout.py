"""Dropout (torch.nn.functional names). Masks are drawn with luban.rand, so
luban.manual_seed makes them reproducible on every device."""
from __future__ import annotations

from ...frontend.random import rand
from ...tensor import Tensor

__all__ = ["dropout", "dropout1d", "dropout2d"]


def _dropout(input: Tensor, p: float, training: bool, inplace: bool, mask_shape: tuple) -> Tensor:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    # keep with probability 1 - p, scaled by 1 / (1 - p) so the expectation is unchanged
    keep = rand(*mask_shape, device=input.device) >= p
    scale = keep.cast(input.dtype) * (1.0 / (1.0 - p)) if p < 1.0 else keep.cast(input.dtype)
    return input.mul_(scale) if inplace else input * scale


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability p during training."""
    return _dropout(input, p, training, inplace, tuple(input.shape))


def _channelwise(input: Tensor, spatial: int, op: str, p: float, training: bool, inplace: bool) -> Tensor:
    """Zero whole channels: (N, C, *spatial) or unbatched (C, *spatial)."""
    if input.ndim not in (spatial + 1, spatial + 2):
        raise RuntimeError(f"{op}: expected {spatial + 1}-D (unbatched) or {spatial + 2}-D (batched) input, got "
                           f"input of shape {tuple(input.shape)}")
    return _dropout(input, p, training, inplace, tuple(input.shape[:-spatial]) + (1,) * spatial)


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    return _channelwise(input, 1, "dropout1d", p, training, inplace)


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    return _channelwise(input, 2, "dropout2d", p, training, inplace)
