"""torch.optim.SGD: stochastic gradient descent with optional (Nesterov) momentum."""
from __future__ import annotations

from .optimizer import Optimizer


class SGD(Optimizer):
    def __init__(self, params, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize))

    def _update(self, group, p, grad, state):
        neg_lr, momentum, undamped, wd = self._hyper(p, -group["lr"], group["momentum"], 1 - group["dampening"],
                                                      group["weight_decay"])
        g = -grad if group["maximize"] else grad
        if group["weight_decay"] != 0:
            g = g + wd * p
        if group["momentum"] != 0:
            buf = state.get("momentum_buffer")
            # the first buffer is the gradient itself (a new handle: p.grad may be zeroed in place)
            buf = state["momentum_buffer"] = g.detach() if buf is None else buf * momentum + undamped * g
            g = g + momentum * buf if group["nesterov"] else buf
        p.data = p + neg_lr * g
