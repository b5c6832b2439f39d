"""Train a small CNN on the MNIST digits bundled with luban (no download), evaluate it on
the held-out split, and save a checkpoint. This is luban's main job.

Run: python -m luban.examples.mnist [--epochs N] [--device cpu|numpy] [--out mnist.safetensors]
"""
from __future__ import annotations

import argparse
import time

from tqdm import tqdm

import luban
import luban.nn.functional as F
from luban import nn
from luban.data import DataLoader
from luban.data.datasets import MNIST


class SmallCNN(nn.Module):
    def __init__(self, c1: int = 8, c2: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),   # 14x14
            nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),  # 7x7
        )
        self.classifier = nn.Linear(c2 * 7 * 7, 10)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def evaluate(model: nn.Module, loader: DataLoader) -> float:
    model.eval()
    correct = total = 0
    with luban.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(1) == y).sum().item())
            total += len(y)
    model.train()
    return correct / total


def train(epochs: int = 8, batch_size: int = 64, lr: float = 3e-3, out: str | None = "mnist.safetensors",
          train_limit: int | None = None, seed: int = 0, quiet: bool = False) -> float:
    luban.manual_seed(seed)
    train_set, test_set = MNIST("train"), MNIST("test")
    if train_limit is not None:
        train_set = luban.data.Subset(train_set, range(train_limit))
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True)
    test_loader = DataLoader(test_set, batch_size=500)
    model = SmallCNN()
    opt = luban.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = luban.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * len(train_loader))
    t0 = time.perf_counter()
    for epoch in range(epochs):
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", disable=quiet)
        seen = hits = 0
        for x, y in bar:
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=0.1)  # 4,000 digits overfit easily
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            hits += int((logits.argmax(1) == y).sum().item())
            seen += len(y)
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{hits / seen:.3f}",
                            img_s=f"{seen / max(bar.format_dict['elapsed'], 1e-9):.0f}")
    acc = evaluate(model, test_loader)
    print(f"test accuracy {acc:.4f} on {len(test_set)} held-out digits "
          f"({epochs} epochs, {time.perf_counter() - t0:.0f}s)")
    if out:
        luban.save({"model": model.state_dict(), "test_accuracy": acc, "epochs": epochs}, out)
        print(f"checkpoint saved to {out}")
    return acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--device", default=None, help="cpu (default) or numpy")
    ap.add_argument("--out", default="mnist.safetensors", help="checkpoint path ('' to skip)")
    args = ap.parse_args()
    if args.device:
        luban.set_default_device(args.device)
    train(args.epochs, args.batch_size, args.lr, args.out or None)


if __name__ == "__main__":
    main()
