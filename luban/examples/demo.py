"""The main job until the training stack lands: show the lazy graph fusing into a few
kernels, then train a logistic regression with autograd and hand-written SGD steps.

Run: python -m luban.examples.demo   [--device numpy|cpu]
"""
from __future__ import annotations

import argparse
import time

import luban
from luban import debug


def show_fusion() -> None:
    a, b, c = (luban.randn(256, 256).realize() for _ in range(3))
    print("fusion: each line is one expression and the kernels it ran as")
    for label, fn in [
        ("((a*b)+c).relu()", lambda: ((a * b) + c).relu()),
        ("(a*b).sum()", lambda: (a * b).sum()),
        ("a.softmax(-1)", lambda: a.softmax(-1)),
        ("a @ b", lambda: a @ b),
    ]:
        out = fn()
        debug.reset_kernel_count()
        out.realize()
        print(f"  {label:<20} {debug.kernel_count()} kernel(s)")


def make_data(n: int):
    """Two Gaussian blobs in 8-D; label 1 for the blob centred at +0.75."""
    y = (luban.rand(n) < 0.5).float()
    x = luban.randn(n, 8) + (y.unsqueeze(1) * 1.5 - 0.75)
    return x.realize(), y.realize()


def train(steps: int, lr: float) -> float:
    x, y = make_data(2048)
    xt, yt = make_data(1024)
    w = luban.zeros(8, requires_grad=True)
    b = luban.zeros(1, requires_grad=True)
    t0 = time.perf_counter()
    for step in range(steps):
        p = (x @ w + b).sigmoid()
        loss = -(y * (p + 1e-7).log() + (1 - y) * (1 - p + 1e-7).log()).mean()
        loss.backward()
        with luban.no_grad():  # the hand-written SGD step
            w -= lr * w.grad
            b -= lr * b.grad
            w.grad = b.grad = None
        if step % 20 == 0 or step == steps - 1:
            print(f"  step {step:3d}  loss {loss.item():.4f}")
    acc = (((xt @ w + b) > 0).float() == yt).float().mean().item()
    print(f"  trained {steps} steps in {time.perf_counter() - t0:.1f}s; held-out accuracy {acc:.3f}")
    return acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="numpy or cpu (default: LUBAN_DEVICE or cpu)")
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args()
    if args.device:
        luban.set_default_device(args.device)
    luban.manual_seed(0)
    print(f"luban {luban.__version__} on device '{luban.default_device()}'")
    show_fusion()
    print("logistic regression (autograd + hand-written SGD):")
    train(args.steps, lr=0.5)


if __name__ == "__main__":
    main()
