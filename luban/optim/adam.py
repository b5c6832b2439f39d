"""torch.optim.Adam, with AMSGrad and (as AdamW uses) decoupled weight decay."""
from __future__ import annotations

from ..frontend.creation import zeros_like
from .. import dtypes
from ..runtime import get_device
from .optimizer import Optimizer


class Adam(Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *, maximize: bool = False,
                 decoupled_weight_decay: bool = False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize, decoupled_weight_decay=decoupled_weight_decay))

    def _update(self, group, p, grad, state):
        if not state:
            state["step"] = self._zero_step(p)
            state["exp_avg"], state["exp_avg_sq"] = zeros_like(p), zeros_like(p)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = zeros_like(p)
        step = self._next_step(state, p)
        lr, wd, (beta1, beta2) = group["lr"], group["weight_decay"], group["betas"]
        decoupled = group["decoupled_weight_decay"]
        neg_step_size, inv_bc2_sqrt = self._per_step(
            ("adam", id(step.lazydata), p.dtype, p.device, lr, beta1, beta2),
            lambda: _bias_corrections(self, step, p, lr, beta1, beta2))
        decay, w1, b2, w2, eps = self._hyper(p, 1 - lr * wd if decoupled else wd, 1 - beta1, beta2, 1 - beta2,
                                             group["eps"])
        g = -grad if group["maximize"] else grad
        param = p
        if wd != 0:
            if decoupled:
                param = p * decay
            else:
                g = g + decay * p
        m = state["exp_avg"] = state["exp_avg"] + w1 * (g - state["exp_avg"])  # torch's lerp for weight < 0.5
        v = state["exp_avg_sq"] = state["exp_avg_sq"] * b2 + w2 * g * g
        if group["amsgrad"]:
            v = state["max_exp_avg_sq"] = state["max_exp_avg_sq"].maximum(v)
        p.data = param + neg_step_size * m / (v.sqrt() * inv_bc2_sqrt + eps)


def _bias_corrections(opt: Optimizer, step, p, lr: float, beta1: float, beta2: float) -> tuple:
    """-lr / (1 - beta1^step) and 1 / sqrt(1 - beta2^step) from the device's step count
    (as torch's capturable Adam). In float64 where the device has it, as torch computes
    them: 1 - 0.999^step cancels, and float32 would leave it 1e-4 off."""
    s = step.to(dtypes.float64 if dtypes.float64 in get_device(p.device).dtypes else dtypes.float32)
    neg_lr, b1, b2 = opt._hyper(s, -lr, beta1, beta2)  # tensors: a scheduler's new values do not recompile
    # contiguous: computed once per step, not inlined into (and redone by) every update kernel
    return (neg_lr / (1 - b1 ** s)).to(p.dtype).contiguous(), (1 - b2 ** s).rsqrt().to(p.dtype).contiguous()
