"""torch.optim.AdamW: Adam with decoupled weight decay (p *= 1 - lr * weight_decay)."""
from __future__ import annotations

from .adam import Adam


class AdamW(Adam):
    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:  # an Adam checkpoint must not turn AdamW back into Adam
            group["decoupled_weight_decay"] = True
