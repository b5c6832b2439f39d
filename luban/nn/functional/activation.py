"""Activation functions (torch.nn.functional names), as compositions of Tensor ops."""
from __future__ import annotations

import math

from ... import autograd as _autograd
from ...tensor import Tensor, where

__all__ = ["relu", "sigmoid", "tanh", "gelu", "silu", "softplus", "leaky_relu", "elu", "hardtanh", "softmax",
           "log_softmax", "pad"]


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    return input.relu()


def sigmoid(input: Tensor) -> Tensor:
    return input.sigmoid()


def tanh(input: Tensor) -> Tensor:
    return input.tanh()


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    if approximate == "tanh":
        inner = math.sqrt(2 / math.pi) * (input + 0.044715 * input * input * input)
        return 0.5 * input * (1 + inner.tanh())
    if approximate != "none":
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return input._float_unary(_autograd.Gelu)


def silu(input: Tensor) -> Tensor:
    return input * input.sigmoid()


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, written so exp never overflows; linear past threshold."""
    bx = input * beta
    soft = (bx.maximum(0) + (-bx.abs()).exp().log1p()) * (1 / beta)
    return where(bx > threshold, input, soft)


def leaky_relu(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    return where(input > 0, input, input * negative_slope)


def elu(input: Tensor, alpha: float = 1.0) -> Tensor:
    return where(input > 0, input, alpha * (input.minimum(0).exp() - 1))


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    return input.clamp(min_val, max_val)


def softmax(input: Tensor, dim: int = -1, dtype=None) -> Tensor:
    return input.softmax(dim, dtype=dtype)


def log_softmax(input: Tensor, dim: int = -1, dtype=None) -> Tensor:
    return input.log_softmax(dim, dtype=dtype)


def pad(input: Tensor, pad, mode: str = "constant", value: float = 0.0) -> Tensor:
    return input.pad(pad, mode, value)
