"""linear and bilinear (torch.nn.functional), as matmuls."""
from __future__ import annotations

from ...tensor import Tensor

__all__ = ["linear", "bilinear"]


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x W^T + b, W of shape (out_features, in_features)."""
    if weight.ndim not in (1, 2) or input.ndim == 0 or input.shape[-1] != weight.shape[-1]:
        raise RuntimeError(f"linear: input of shape {tuple(input.shape)} cannot be multiplied by weight of shape "
                           f"{tuple(weight.shape)} (expected input.shape[-1] == weight.shape[-1])")
    out = input @ weight.T
    return out if bias is None else out + bias


def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y[..., o] = sum_ij x1[..., i] W[o, i, j] x2[..., j] + b[o]."""
    if weight.ndim != 3 or input1.ndim == 0 or tuple(input1.shape[:-1]) != tuple(input2.shape[:-1]) \
            or (input1.shape[-1], input2.shape[-1]) != tuple(weight.shape[1:]):
        raise RuntimeError(f"bilinear: inputs of shapes {tuple(input1.shape)} and {tuple(input2.shape)} don't match "
                           f"weight of shape {tuple(weight.shape)} (expected (..., in1) and (..., in2) with the same "
                           f"batch shape, and weight (out, in1, in2))")
    o, i, j = weight.shape
    # contract x1 with W as one matmul, then x2 with a broadcast multiply + sum
    t = (input1 @ weight.permute(1, 0, 2).reshape(i, o * j)).unflatten(-1, (o, j))
    out = (t * input2.unsqueeze(-2)).sum(-1)
    return out if bias is None else out + bias
