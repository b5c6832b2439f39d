"""Tiny adapter so one model definition serves both frameworks."""
from __future__ import annotations

import os
import types

import numpy as np


def load(name: str):
    """Return a namespace with: name ('luban' or 'torch'), label (also 'torch.compile'), lib,
    nn, F, optim, tensor(np array), no_grad, sync(t) (force the lazy work and return a host
    value), compile(model or function): torch.compile for 'torch.compile', else as is."""
    label = name
    if name == "torch.compile":
        name = "torch"
    if name == "luban":
        import luban as lib
        import luban.nn.functional as F
        tensor = lambda a: lib.tensor(np.ascontiguousarray(a)).realize()
        sync = lambda t: t.realize().numpy()
    elif name == "torch":
        import torch as lib
        import torch.nn.functional as F
        lib.set_num_threads(2)
        tensor = lambda a: lib.from_numpy(np.ascontiguousarray(a))
        sync = lambda t: t.detach().numpy()
    else:
        raise ValueError(name)
    compile_ = lib.compile if label == "torch.compile" else (lambda f: f)
    return types.SimpleNamespace(name=name, label=label, lib=lib, nn=lib.nn, F=F, optim=lib.optim,
                                 tensor=tensor, no_grad=lib.no_grad, sync=sync,
                                 manual_seed=lib.manual_seed, compile=compile_)


class Workload:
    """kind: 'train' (step() returns the loss as a float), 'latency' (step() returns
    nothing, the output is read to host) or 'gflops' (flops per step given)."""

    def __init__(self, step, kind: str, flops: float = 0.0, items: int = 1, unit: str = "samples"):
        self.step, self.kind, self.flops, self.items, self.unit = step, kind, flops, items, unit


def train_step(fw, model, opt, loss_fn, x, y):
    model = fw.compile(model)  # torch.compile: the model's forward and backward; the optimizer stays eager

    def inner():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss
    if fw.name == "luban" and os.environ.get("LUBAN_BENCH_JIT") == "1":  # bench/run.py --jit
        inner = fw.lib.jit(inner)

    def step():
        return float(inner().item())  # host read: the lazy work is done inside the timed region
    return step
