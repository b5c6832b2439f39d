"""Train a small character-level GPT on the Shakespeare text bundled with luban, then
print generated samples.

Run: python -m luban.examples.chargpt [--steps N] [--device cpu|numpy]
"""
from __future__ import annotations

import argparse
import math
import time

import luban
import luban.nn.functional as F
from luban import nn
from luban.data import DataLoader
from luban.data.datasets import CharDataset, shakespeare


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention, then a GELU MLP."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=-1)
        q, k, v = (z.reshape(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp(self.ln2(x))


class CharGPT(nn.Module):
    def __init__(self, vocab: int, context: int, width: int = 64, layers: int = 2, heads: int = 4):
        super().__init__()
        self.context = context
        self.tok, self.pos = nn.Embedding(vocab, width), nn.Embedding(context, width)
        self.blocks = nn.Sequential(*[Block(width, heads) for _ in range(layers)])
        self.ln, self.head = nn.LayerNorm(width), nn.Linear(width, vocab)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.tok(idx) + self.pos(luban.arange(t))
        return self.head(self.ln(self.blocks(x)))

    @luban.no_grad()
    def generate(self, idx, n: int, temperature: float = 0.8):
        for _ in range(n):
            logits = self(idx[:, -self.context:])[:, -1] / temperature
            probs = logits.softmax(-1).numpy()[0].astype("float64")
            nxt = int(luban.data.generator.randint(1 << 30, 1)[0]) / (1 << 30)  # uniform draw from luban's RNG
            choice = min(int((probs.cumsum() < nxt * probs.sum()).sum()), len(probs) - 1)
            idx = luban.cat([idx, luban.tensor([[choice]])], 1).realize()
        return idx


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--context", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    if args.device:
        luban.set_default_device(args.device)
    luban.manual_seed(0)
    data = CharDataset(shakespeare(), args.context)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True)
    model = CharGPT(data.vocab_size, args.context)
    opt = luban.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = luban.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters, vocabulary of {data.vocab_size} characters")
    t0, step = time.perf_counter(), 0
    while step < args.steps:
        for x, y in loader:
            loss = F.cross_entropy(model(x).reshape(-1, data.vocab_size), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 50 == 0 or step == 1:
                print(f"step {step:4d}  loss {loss.item():.3f}  ({time.perf_counter() - t0:.0f}s; a uniform guess is "
                      f"{math.log(data.vocab_size):.2f})")
            if step == args.steps:
                break
    model.eval()
    prompt = luban.tensor([data.encode("ROMEO:\n")])
    print("--- sample ---")
    print(data.decode(model.generate(prompt, 200)[0].tolist()))


if __name__ == "__main__":
    main()
