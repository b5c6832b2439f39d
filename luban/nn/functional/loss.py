"""Loss functions (torch.nn.functional names and semantics), as compositions of Tensor ops."""
from __future__ import annotations

import warnings

from ...tensor import Tensor, where

__all__ = ["cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
           "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div"]

_REDUCTIONS = ("none", "mean", "sum")


# ---- reductions -------------------------------------------------------------------------
def legacy_reduction(size_average, reduce, reduction: str) -> str:
    """The deprecated size_average/reduce flags override `reduction`, as in PyTorch."""
    if size_average is None and reduce is None:
        return reduction
    warnings.warn("size_average and reduce args will be deprecated, please use reduction='mean' (or 'sum', "
                  "'none') instead.", stacklevel=3)
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    return "none" if not reduce else "mean" if size_average else "sum"


def _check_reduction(op: str, reduction: str, allowed=_REDUCTIONS) -> None:
    if reduction not in allowed:
        raise ValueError(f"{op}: {reduction!r} is not a valid value for reduction; expected one of {allowed}")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _warn_if_broadcast(op: str, input: Tensor, target: Tensor) -> None:
    """Regression losses broadcast a differently shaped target, with PyTorch's warning."""
    if tuple(input.shape) != tuple(target.shape):
        warnings.warn(f"{op}: using a target size {tuple(target.shape)} that is different to the input size "
                      f"{tuple(input.shape)}. This will likely lead to incorrect results due to broadcasting. "
                      f"Please ensure they have the same size.", stacklevel=3)


def _require_same_shape(op: str, input: Tensor, target: Tensor) -> None:
    if tuple(input.shape) != tuple(target.shape):
        raise ValueError(f"{op}: target size {tuple(target.shape)} must be the same as input size "
                         f"{tuple(input.shape)}")


# ---- classification over a class dim ------------------------------------------------------------
def _class_dim(op: str, input: Tensor) -> int:
    """(C,) is one unbatched sample; otherwise (N, C, d1, ...) with classes along dim 1."""
    if input.ndim == 0:
        raise ValueError(f"{op}: input must have at least 1 dimension (C,) or (N, C, ...), got a 0-d tensor")
    return 0 if input.ndim == 1 else 1


def _check_weight(op: str, weight: Tensor, n_classes: int) -> None:
    if tuple(weight.shape) != (n_classes,):
        raise RuntimeError(f"{op}: weight tensor should be defined either for all {n_classes} classes or no "
                           f"classes but got weight tensor of shape: {tuple(weight.shape)}")


def _check_index_target(op: str, input: Tensor, target: Tensor, class_dim: int) -> None:
    expected = tuple(s for d, s in enumerate(input.shape) if d != class_dim)
    if target.dtype.is_float or target.dtype.is_bool:
        raise RuntimeError(f"{op}: expected class-index targets of an integer dtype with shape {expected} (or "
                           f"class probabilities with the input's shape {tuple(input.shape)}), got {target.dtype} "
                           f"of shape {tuple(target.shape)}")
    if tuple(target.shape) != expected:
        raise RuntimeError(f"{op}: expected target of shape {expected} for input of shape {tuple(input.shape)} "
                           f"(classes along dim {class_dim}), got target of shape {tuple(target.shape)}")


def _nll_terms(op: str, logp: Tensor, target: Tensor, weight: Tensor | None, ignore_index: int,
               class_dim: int) -> tuple:
    """Per-element -w[t] * logp[t] and the weights w[t] (both 0 where the target is ignored)."""
    _check_index_target(op, logp, target, class_dim)
    keep = target != ignore_index
    safe = where(keep, target, 0).long()  # ignored targets may lie outside [0, C) (e.g. -100)
    picked = logp.gather(class_dim, safe.unsqueeze(class_dim)).squeeze(class_dim)
    w = keep.cast(logp.dtype)
    if weight is not None:
        w = w * weight.gather(0, safe.reshape(-1)).reshape(safe.shape)
    return -picked * w, w


def _weighted_reduce(loss: Tensor, w: Tensor, reduction: str) -> Tensor:
    """PyTorch's rule for class-index losses: 'mean' is the weighted mean, sum(loss) / sum(w)."""
    return loss.sum() / w.sum() if reduction == "mean" else _reduce(loss, reduction)


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average=None,
             ignore_index: int = -100, reduce=None, reduction: str = "mean") -> Tensor:
    """Negative log likelihood of class-index targets, given log-probabilities (N, C, d1, ...)."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction("nll_loss", reduction)
    class_dim = _class_dim("nll_loss", input)
    if weight is not None:
        _check_weight("nll_loss", weight, input.shape[class_dim])
    loss, w = _nll_terms("nll_loss", input, target, weight, ignore_index, class_dim)
    return _weighted_reduce(loss, w, reduction)


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average=None,
                  ignore_index: int = -100, reduce=None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """log_softmax over the class dim followed by the NLL of class indices, or by the cross
    entropy with class probabilities when `target` is floating point with the input's shape."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction("cross_entropy", reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    class_dim = _class_dim("cross_entropy", input)
    n_classes = input.shape[class_dim]
    logp = input.log_softmax(class_dim)
    wc = None  # weight shaped to broadcast along the class dim
    if weight is not None:
        _check_weight("cross_entropy", weight, n_classes)
        wc = weight.reshape([n_classes if d == class_dim else 1 for d in range(input.ndim)])
    if target.dtype.is_float:
        return _cross_entropy_probs(logp, target, wc, reduction, label_smoothing, class_dim)
    loss, w = _nll_terms("cross_entropy", logp, target, weight, ignore_index, class_dim)
    loss = _weighted_reduce(loss, w, reduction)
    if label_smoothing == 0.0:
        return loss
    # the smoothing term: -logp summed over classes (weighted), normalised like the NLL term
    smooth = -(logp if wc is None else logp * wc).sum(class_dim)
    smooth = _weighted_reduce(where(target != ignore_index, smooth, 0.0), w, reduction)
    return (1 - label_smoothing) * loss + smooth * (label_smoothing / n_classes)


def _cross_entropy_probs(logp: Tensor, target: Tensor, wc: Tensor | None, reduction: str,
                         label_smoothing: float, class_dim: int) -> Tensor:
    """-sum_c wc * target * logp; 'mean' averages over the batch elements, whatever the weights."""
    if tuple(target.shape) != tuple(logp.shape):
        raise RuntimeError(f"cross_entropy: class-probability targets must have the input's shape "
                           f"{tuple(logp.shape)}, got {tuple(target.shape)} (class-index targets need an "
                           f"integer dtype)")
    if label_smoothing > 0:
        target = target * (1 - label_smoothing) + label_smoothing / logp.shape[class_dim]
    terms = logp * target if wc is None else logp * target * wc
    return _reduce(-terms.sum(class_dim), reduction)


# ---- regression -------------------------------------------------------------------------------
def _check_pointwise_weight(op: str, weight: Tensor | None, input: Tensor) -> None:
    if weight is not None and tuple(weight.shape) != tuple(input.shape):
        raise ValueError(f"{op}: weights and input must have the same size; got weight of shape "
                         f"{tuple(weight.shape)} for input of shape {tuple(input.shape)}")


def _weighted_pointwise(loss: Tensor, weight: Tensor | None, reduction: str) -> Tensor:
    """mse_loss / l1_loss with per-element weights: 'mean' is sum(w * loss) / sum(w), as in PyTorch."""
    if weight is None:
        return _reduce(loss, reduction)
    loss = loss * weight
    return loss.sum() / weight.sum() if reduction == "mean" else _reduce(loss, reduction)


def _pointwise_loss(name: str, input: Tensor, target: Tensor, size_average, reduce, reduction: str,
                    weight: Tensor | None, elementwise) -> Tensor:
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction(name, reduction)
    _warn_if_broadcast(name, input, target)
    _check_pointwise_weight(name, weight, input)
    return _weighted_pointwise(elementwise(input - target), weight, reduction)


def mse_loss(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean",
             weight: Tensor | None = None) -> Tensor:
    return _pointwise_loss("mse_loss", input, target, size_average, reduce, reduction, weight, lambda d: d * d)


def l1_loss(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean",
            weight: Tensor | None = None) -> Tensor:
    return _pointwise_loss("l1_loss", input, target, size_average, reduce, reduction, weight, lambda d: d.abs())


def smooth_l1_loss(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean",
                   beta: float = 1.0) -> Tensor:
    """Quadratic 0.5 d^2 / beta inside |d| < beta, linear |d| - beta / 2 outside."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction("smooth_l1_loss", reduction)
    if beta < 0:
        raise RuntimeError(f"smooth_l1_loss: beta must be non-negative, got {beta}")
    _warn_if_broadcast("smooth_l1_loss", input, target)
    ad = (input - target).abs()
    if beta == 0.0:
        return _reduce(ad, reduction)
    return _reduce(where(ad < beta, 0.5 * ad * ad / beta, ad - 0.5 * beta), reduction)


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0,
               weight: Tensor | None = None) -> Tensor:
    """Quadratic 0.5 d^2 inside |d| < delta, linear delta (|d| - delta / 2) outside. With
    per-element weights 'mean' is the plain mean of the weighted terms (PyTorch's rule here)."""
    _check_reduction("huber_loss", reduction)
    if delta <= 0:
        raise RuntimeError(f"huber_loss: delta must be positive, got {delta}")
    _warn_if_broadcast("huber_loss", input, target)
    _check_pointwise_weight("huber_loss", weight, input)
    ad = (input - target).abs()
    loss = where(ad < delta, 0.5 * ad * ad, delta * (ad - 0.5 * delta))
    return _reduce(loss if weight is None else loss * weight, reduction)


# ---- binary classification ------------------------------------------------------------------------
def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average=None,
                         reduce=None, reduction: str = "mean") -> Tensor:
    """-(t log x + (1 - t) log(1 - x)), each log clamped at -100 so x = 0 or 1 stays finite."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction("binary_cross_entropy", reduction)
    _require_same_shape("binary_cross_entropy", input, target)
    loss = -(target * _clamped_log(input) + (1 - target) * _clamped_log(1 - input))
    return _reduce(loss if weight is None else loss * weight, reduction)


def _clamped_log(x: Tensor) -> Tensor:
    """log(x) clamped at -100 like PyTorch's, with log never evaluated at x = 0: its gradient
    there is 0 (the clamp's) instead of 0 * inf = nan."""
    pos = x > 0
    return where(pos, where(pos, x, 1.0).log(), -100.0).clamp(min=-100)


def _log_sigmoid(x: Tensor) -> Tensor:
    """log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)): exp never overflows."""
    return x.minimum(0) - (-x.abs()).exp().log1p()


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                     size_average=None, reduce=None, reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """BCE of sigmoid(input) computed from the logits: -(p t log s(x) + (1 - t) log(1 - s(x)))
    with log(1 - s(x)) = log s(x) - x; pos_weight p broadcasts along the last (class) dim."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction("binary_cross_entropy_with_logits", reduction)
    _require_same_shape("binary_cross_entropy_with_logits", input, target)
    log_sig = _log_sigmoid(input)
    if pos_weight is None:
        loss = (1 - target) * input - log_sig
    else:
        loss = (1 - target) * input - ((pos_weight - 1) * target + 1) * log_sig
    return _reduce(loss if weight is None else loss * weight, reduction)


# ---- distributions ------------------------------------------------------------------------------
def kl_div(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean",
           log_target: bool = False) -> Tensor:
    """Pointwise target * (log target - input) with `input` given as log-probabilities;
    0 where target is 0 (xlogy). 'batchmean' divides the sum by the batch size."""
    reduction = legacy_reduction(size_average, reduce, reduction)
    _check_reduction("kl_div", reduction, _REDUCTIONS + ("batchmean",))
    if log_target:
        loss = target.exp() * (target - input)
    else:
        # log of 1 where target is 0, so neither the value nor its gradient sees log(0)
        loss = target * where(target > 0, target, 1.0).log() - target * input
    if reduction == "batchmean":
        return loss.sum() / input.shape[0] if input.ndim else loss.sum()
    if reduction == "mean":
        warnings.warn("reduction: 'mean' divides the total loss by both the batch size and the support size. "
                      "'batchmean' divides only by the batch size, and aligns with the KL div math definition. "
                      "'mean' will be changed to behave the same as 'batchmean' in the next major release.",
                      stacklevel=2)
    return _reduce(loss, reduction)
