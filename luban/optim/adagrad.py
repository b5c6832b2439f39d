"""torch.optim.Adagrad."""
from __future__ import annotations

from ..frontend.creation import full_like
from .optimizer import Optimizer


class Adagrad(Optimizer):
    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10, *, maximize: bool = False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= lr_decay:
            raise ValueError(f"Invalid lr_decay value: {lr_decay}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= initial_accumulator_value:
            raise ValueError(f"Invalid initial_accumulator_value value: {initial_accumulator_value}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, maximize=maximize))
        for group in self.param_groups:  # torch creates Adagrad's state eagerly
            for p in group["params"]:
                self._init_state(group, p, self.state[p])

    def _init_state(self, group, p, state):
        state["step"], state["sum"] = self._zero_step(p), full_like(p, group["initial_accumulator_value"])

    def _update(self, group, p, grad, state):
        if not state:  # a group added after construction
            self._init_state(group, p, state)
        step = self._next_step(state, p)
        neg_lr, wd, eps = self._hyper(p, -group["lr"], group["weight_decay"], group["eps"])
        decay = group["lr_decay"]
        neg_clr = neg_lr if decay == 0 else self._per_step(  # lr / (1 + (step - 1) * lr_decay)
            ("adagrad", id(step.lazydata), p.dtype, p.device, decay),
            lambda: (neg_lr / (1 + (step.to(p.dtype) - 1) * decay)).contiguous())
        g = -grad if group["maximize"] else grad
        if group["weight_decay"] != 0:
            g = g + wd * p
        s = state["sum"] = state["sum"] + g * g
        p.data = p + neg_clr * g / (s.sqrt() + eps)
