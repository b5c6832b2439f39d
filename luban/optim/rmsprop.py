"""torch.optim.RMSprop, with optional momentum and centering."""
from __future__ import annotations

from ..frontend.creation import zeros_like
from .optimizer import Optimizer


class RMSprop(Optimizer):
    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0,
                 momentum: float = 0, centered: bool = False, *, maximize: bool = False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= momentum:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= alpha:
            raise ValueError(f"Invalid alpha value: {alpha}")
        super().__init__(params, dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                                      weight_decay=weight_decay, maximize=maximize))

    def _update(self, group, p, grad, state):
        if not state:
            state["step"], state["square_avg"] = self._zero_step(p), zeros_like(p)
            if group["momentum"] > 0:
                state["momentum_buffer"] = zeros_like(p)
            if group["centered"]:
                state["grad_avg"] = zeros_like(p)
        self._next_step(state, p)
        neg_lr, wd, alpha, w, eps, momentum = self._hyper(p, -group["lr"], group["weight_decay"], group["alpha"],
                                                           1 - group["alpha"], group["eps"], group["momentum"])
        g = -grad if group["maximize"] else grad
        if group["weight_decay"] != 0:
            g = g + wd * p
        sq = state["square_avg"] = state["square_avg"] * alpha + w * g * g
        if group["centered"]:
            avg_g = state["grad_avg"] = state["grad_avg"] + w * (g - state["grad_avg"])
            avg = (sq - avg_g * avg_g).sqrt() + eps
        else:
            avg = sq.sqrt() + eps
        if group["momentum"] > 0:
            buf = state["momentum_buffer"] = state["momentum_buffer"] * momentum + g / avg
            p.data = p + neg_lr * buf
        else:
            p.data = p + neg_lr * g / avg
