"""Normalization (torch.nn.functional names): batch, layer, group and RMS norm, normalize."""
from __future__ import annotations

import ml_dtypes

from ...autograd import Function, no_grad
from ...schedule import realize
from ...tensor import Tensor

__all__ = ["batch_norm", "layer_norm", "group_norm", "rms_norm", "normalize"]


def _moments(x: Tensor, axes: tuple) -> tuple:
    """(mean, x - mean, biased variance) over axes, keepdim."""
    mean = x.mean(axes, keepdim=True)
    diff = x - mean
    return mean, diff, (diff * diff).mean(axes, keepdim=True)


class _Normalize(Function):
    """(x - mean) / sqrt(var + eps) over `axes`, with its backward as one expression:
    dx = rstd * (g - mean(g) - xhat * mean(g * xhat)). Composed, autograd's graph through
    the mean and the variance costs two more passes over x's size (a transformer step
    runs one per LayerNorm)."""

    def forward(self, x, axes, eps, moments=None):
        """moments: (mean, var) already computed from x (batch_norm's running stats read
        them too), else computed here."""
        x = Tensor._wrap(x)
        if moments is None:
            _, diff, var = _moments(x, axes)
        else:
            diff, var = x - Tensor._wrap(moments[0]), Tensor._wrap(moments[1])
        rstd = (var + eps).rsqrt()
        xhat = diff * rstd
        self.xhat, self.rstd, self.axes = xhat.lazydata, rstd.lazydata, axes
        return self.xhat

    def backward(self, g):
        g, xhat, rstd = Tensor._wrap(g), Tensor._wrap(self.xhat), Tensor._wrap(self.rstd)
        mean_g = g.mean(self.axes, keepdim=True)
        mean_gx = (g * xhat).mean(self.axes, keepdim=True)
        return (rstd * (g - mean_g - xhat * mean_gx)).lazydata


def _normalize(x: Tensor, axes: tuple, eps: float, moments=None) -> Tensor:
    moments = None if moments is None else tuple(m.lazydata for m in moments)
    return Tensor._apply(_Normalize, x, axes=axes, eps=eps, moments=moments)


def _in_float32(input: Tensor, fn) -> Tensor:
    """fn(input), for a float16 or bfloat16 input computed in float32 (Tensor._wide) and
    rounded once to the input's dtype, as PyTorch does (its output has the input's dtype
    whatever the weight's). Normalizing in half precision rounds the mean, the variance and
    x - mean each: a bfloat16 LayerNorm over short rows was off by up to 0.13, PyTorch's by
    0.004."""
    wide = input._wide()
    return fn(input) if wide is input else fn(wide).cast(input.dtype)


def _affine(out: Tensor, weight, bias, shape: tuple) -> Tensor:
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def _check_channels(name: str, t, c: int) -> None:
    if t is not None and t.numel() != c:
        raise RuntimeError(f"batch_norm: {name} should contain {c} elements, not {t.numel()} (shape "
                           f"{tuple(t.shape)})")


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None, weight: Tensor | None = None,
               bias: Tensor | None = None, training: bool = False, momentum=0.1, eps: float = 1e-5) -> Tensor:
    """Normalize each channel (dim 1) over the batch and spatial dims. Training uses the
    batch statistics and, when running stats are given, updates them in place:
    running = (1 - momentum) * running + momentum * batch_stat, with the unbiased batch
    variance (as PyTorch). Otherwise the running statistics normalize."""
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expected an input with at least 2 dimensions (N, C, ...), got shape "
                         f"{tuple(input.shape)}")
    c = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        _check_channels(name, t, c)
    if input._wide() is not input:  # (the running statistics keep their own dtype: copy_ rounds into it)
        return _in_float32(input, lambda x: batch_norm(x, running_mean, running_var, weight, bias, training,
                                                        momentum, eps))
    shape = (1, c) + (1,) * (input.ndim - 2)
    if not training:
        if running_mean is None or running_var is None:
            raise RuntimeError("batch_norm: running_mean and running_var are required when training=False")
        out = (input - running_mean.reshape(shape)) * (running_var.reshape(shape) + eps).rsqrt()
        return _affine(out, weight, bias, shape)
    n = input.numel() // c if c else 0
    if n <= 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size "
                         f"{list(input.shape)}")
    axes = (0,) + tuple(range(2, input.ndim))
    with no_grad():  # _Normalize's backward accounts for the statistics' dependence on x
        mean, _, var = _moments(input, axes)
    if running_var is not None:
        # a kernel of its own, so the running update reads it instead of reducing the input again
        var = var.contiguous()
    out = _normalize(input, axes, eps, (mean, var))
    stats = [t for t in (running_mean, running_var) if t is not None]
    if stats:
        # the last update is still a lazy graph: realize it so that updates don't stack
        # into a graph as deep as the training loop is long
        realize([t.lazydata for t in stats])
        with no_grad():
            if running_mean is not None:
                running_mean.copy_(running_mean * (1 - momentum) + mean.reshape(c) * momentum)
            if running_var is not None:
                running_var.copy_(running_var * (1 - momentum) + var.reshape(c) * (momentum * n / (n - 1)))
    return _affine(out, weight, bias, shape)


def _normalized_shape(input: Tensor, normalized_shape, op: str) -> tuple:
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not ns or input.ndim < len(ns) or tuple(input.shape[-len(ns):]) != ns:
        raise RuntimeError(f"{op}: given normalized_shape={list(ns)}, expected input with shape "
                           f"[*, {', '.join(map(str, ns))}], but got input of shape {tuple(input.shape)}")
    return ns


def layer_norm(input: Tensor, normalized_shape, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    ns = _normalized_shape(input, normalized_shape, "layer_norm")
    return _in_float32(input, lambda x: _affine(_normalize(x, tuple(range(-len(ns), 0)), eps), weight, bias, ns))


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalize each group of num_groups consecutive channels over (channels, spatial)."""
    if input.ndim < 2 or input.shape[1] % num_groups:
        raise RuntimeError(f"group_norm: expected an input (N, C, ...) with C divisible by num_groups="
                           f"{num_groups}, but got input of shape {tuple(input.shape)}")
    n, c = input.shape[:2]

    def norm(x):
        grouped = x.reshape(n, num_groups, x.numel() // max(n * num_groups, 1))
        return _affine(_normalize(grouped, (2,), eps).reshape(x.shape), weight, bias, (1, c) + (1,) * (x.ndim - 2))
    return _in_float32(input, norm)


def rms_norm(input: Tensor, normalized_shape, weight: Tensor | None = None, eps: float | None = None) -> Tensor:
    """x / sqrt(mean(x^2) + eps) over the normalized dims; eps=None is the dtype's epsilon."""
    ns = _normalized_shape(input, normalized_shape, "rms_norm")
    if eps is None:
        eps = float(ml_dtypes.finfo(input.dtype.np).eps)

    def norm(x):
        out = x * ((x * x).mean(tuple(range(-len(ns), 0)), keepdim=True) + eps).rsqrt()
        return out if weight is None else out * weight
    return _in_float32(input, norm)


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> Tensor:
    """input / max(||input||_p along dim, eps)."""
    return input / input.norm(p, dim, keepdim=True).clamp_min(eps)
