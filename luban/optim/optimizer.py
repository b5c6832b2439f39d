"""Optimizer: torch.optim's base class (param groups, per-parameter state, state_dict).

An update is a value, like every luban tensor: step() builds each new parameter and
state tensor lazily under no_grad, rebinds them (`p.data = ...`, `state[k] = ...`) and
realizes them all in one call, so the scheduler fuses each parameter's update with its
state updates. Hyperparameters reach the kernels as a small device tensor, not as
constants: an lr from a scheduler or the bias-correction step count changes every step,
and a constant would change the kernel source and recompile it every step.

State tensors are rebound, never written, so a state_dict() is a snapshot that later
steps leave alone (torch's aliases the live state and needs a deepcopy).
"""
from __future__ import annotations

import warnings
from collections import defaultdict
from copy import deepcopy
from itertools import chain

import numpy as np

from .. import dtypes
from ..autograd import enable_grad, no_grad
from ..schedule import realize
from ..tensor import Tensor


class Optimizer:
    def __init__(self, params, defaults: dict):
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            f"but got {type(params).__name__}")
        self.defaults = defaults
        self.state: defaultdict = defaultdict(dict)
        self.param_groups: list[dict] = []
        self._hyper_bufs: dict = {}
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {group[k]}" for k in sorted(group) if k != "params"]
        return "\n".join(lines) + "\n)"

    def add_param_group(self, param_group: dict) -> None:
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering of "
                            "tensors in sets will change between runs. Please use a list instead.")
        params = param_group["params"] = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            param_group.setdefault(name, default)
        if len({id(p) for p in params}) != len(params):
            warnings.warn("optimizer contains a parameter group with duplicate parameters", stacklevel=3)
        taken = {id(p) for group in self.param_groups for p in group["params"]}
        if any(id(p) in taken for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_()
                    p.grad.zero_()

    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns closure()'s loss."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        self._hyper_bufs = {}
        self._steps = {}  # this step's shared values (see _next_step)
        written = []
        with no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        state = self.state[p]
                        self._update(group, p, p.grad, state)
                        written += [p, *(v for v in state.values() if isinstance(v, Tensor))]
        realize([t.lazydata for t in written])  # one graph: the scheduler fuses across all of it
        self._steps = {}  # holds tensors keyed by id: never across steps
        return loss

    def _update(self, group: dict, p: Tensor, grad: Tensor, state: dict) -> None:
        """Rebind p.data and p's state entries to their new (lazy) values."""
        raise NotImplementedError

    def _hyper(self, p: Tensor, *values: float) -> tuple:
        """`values` (computed in double, like torch's Python scalars) as 0-d tensors in
        p's dtype, views of one small device buffer per distinct set of values in a step."""
        key = (values, p.dtype, p.device)
        buf = self._hyper_bufs.get(key)
        if buf is None:
            buf = self._hyper_bufs[key] = Tensor(np.array(values, dtype=np.float64), dtype=p.dtype, device=p.device)
        return tuple(buf[i] for i in range(len(values)))

    def _next_step(self, state: dict, p: Tensor) -> Tensor:
        """state['step'] + 1, computed on the device: no host read, so a jitted step can
        replay it. Parameters holding the same step tensor (made or advanced together)
        share the new one, so a whole group advances with one tiny kernel."""
        old = state["step"]
        got = self._steps.get(id(old.lazydata))
        if got is None:
            got = self._steps[id(old.lazydata)] = (old, old + 1)  # keeps `old` alive: its id is the key
        state["step"] = got[1]
        return got[1]

    def _zero_step(self, p: Tensor) -> Tensor:
        """The initial state['step'] (0.0, float32, as in torch), one per device, shared."""
        zeros = self.__dict__.setdefault("_zero_steps", {})
        if p.device not in zeros:
            zeros[p.device] = step_tensor(0.0, p)
        return zeros[p.device]

    def _per_step(self, key: tuple, make):
        """make() once per step for `key` (values shared by every parameter of a group)."""
        if key not in self._steps:
            self._steps[key] = make()
        return self._steps[key]

    # ---- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict:
        """{'state': {index: {...}}, 'param_groups': [{..., 'params': [index, ...]}]}, where
        index numbers the parameters in group order, as in torch."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            start = len(index)
            index.update({id(p): i for i, p in enumerate(group["params"], start) if id(p) not in index})
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {(index[id(k)] if isinstance(k, Tensor) else k): dict(v) for k, v in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        saved = deepcopy(state_dict["param_groups"])
        if len(saved) != len(self.param_groups):
            raise ValueError(f"loaded state dict has a different number of parameter groups ({len(saved)}) than "
                             f"the optimizer ({len(self.param_groups)})")
        for i, (group, s) in enumerate(zip(self.param_groups, saved)):
            if len(group["params"]) != len(s["params"]):
                raise ValueError(f"loaded state dict contains a parameter group that doesn't match the size of "
                                 f"optimizer's group: group {i} has {len(s['params'])} parameters in the state "
                                 f"dict and {len(group['params'])} in the optimizer")
        id_map = dict(zip(chain.from_iterable(s["params"] for s in saved),
                          chain.from_iterable(g["params"] for g in self.param_groups)))
        state: defaultdict = defaultdict(dict)
        for k, v in state_dict["state"].items():
            p = id_map.get(k)
            state[k if p is None else p] = v if p is None else {name: _to_param(p, name, x) for name, x in v.items()}
        for group, s in zip(self.param_groups, saved):
            s["params"] = group["params"]
        self.state, self.param_groups = state, saved


def step_tensor(value: float, p: Tensor) -> Tensor:
    """state['step']: a float32 0-d tensor, as in torch; made on the host, so no kernel."""
    return Tensor(value, dtype=dtypes.float32, device=p.device)


def _to_param(p: Tensor, key, value):
    """Float state follows the parameter's dtype and device; 'step' keeps its float32."""
    if not isinstance(value, Tensor):
        return value
    if value.is_floating_point() and p.is_floating_point() and key != "step":
        return value.to(dtype=p.dtype, device=p.device)
    return value.to(device=p.device)
