"""W3: GPT-mini train step: vocab 65, ctx 64, 4 layers, 4 heads, width 128, batch 32, AdamW."""
import numpy as np

from .adapter import Workload, train_step

NAME, DESC = "W3", "GPT-mini train step (4L/4H/128, ctx64, b32), AdamW"
V, T, L, H, C, B = 65, 64, 4, 4, 128, 32


def build(fw, quick=False):
    nn, F, lib = fw.nn, fw.F, fw.lib

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.qkv, self.proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.mlp = nn.Sequential(nn.Linear(C, 4 * C), nn.GELU(), nn.Linear(4 * C, C))

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(c, dim=-1)
            q, k, v = (z.reshape(b, t, H, c // H).transpose(1, 2) for z in (q, k, v))
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(att.transpose(1, 2).reshape(b, t, c))
            return x + self.mlp(self.ln2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = nn.Embedding(V, C), nn.Embedding(T, C)
            self.blocks = nn.Sequential(*[Block() for _ in range(L)])
            self.ln, self.head = nn.LayerNorm(C), nn.Linear(C, V)

        def forward(self, idx):
            x = self.tok(idx) + self.pos(lib.arange(idx.shape[1]))
            return self.head(self.ln(self.blocks(x)))

    rng = np.random.default_rng(0)
    data = rng.integers(0, V, (B, T + 1)).astype(np.int64)
    x, y = fw.tensor(data[:, :-1]), fw.tensor(data[:, 1:])
    fw.manual_seed(0)
    model = GPT()
    opt = fw.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    loss = lambda logits, tgt: F.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1))
    return Workload(train_step(fw, model, opt, loss, x, y), "train", items=B * T, unit="tokens")
