"""W4: BERT-mini-like encoder inference latency: 4 layers, hidden 256, 4 heads,
intermediate 1024, GELU, post-LayerNorm, batch 1, seq 128, vocab 30522."""
import os

import numpy as np

from .adapter import Workload

NAME, DESC = "W4", "BERT-mini encoder inference, b1 seq128 (latency)"
V, S, L, H, C, I = 30522, 128, 4, 4, 256, 1024


def build(fw, quick=False):
    nn, F, lib = fw.nn, fw.F, fw.lib

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv, self.o = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.fc1, self.fc2 = nn.Linear(C, I), nn.Linear(I, C)

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = self.qkv(x).split(c, dim=-1)
            q, k, v = (z.reshape(b, t, H, c // H).transpose(1, 2) for z in (q, k, v))
            att = F.scaled_dot_product_attention(q, k, v)
            x = self.ln1(x + self.o(att.transpose(1, 2).reshape(b, t, c)))
            return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos, self.typ = nn.Embedding(V, C), nn.Embedding(512, C), nn.Embedding(2, C)
            self.ln = nn.LayerNorm(C)
            self.layers = nn.Sequential(*[Layer() for _ in range(L)])

        def forward(self, ids):
            t = ids.shape[1]
            x = self.tok(ids) + self.pos(lib.arange(t)) + self.typ(lib.zeros_like(ids))
            return self.layers(self.ln(x))

    rng = np.random.default_rng(0)
    ids = fw.tensor(rng.integers(0, V, (1, S)).astype(np.int64))
    fw.manual_seed(0)
    model = Encoder()
    model.eval()

    model = fw.compile(model)

    def infer():
        with fw.no_grad():
            return model(ids)
    if fw.name == "luban" and os.environ.get("LUBAN_BENCH_JIT") == "1":  # bench/run.py --jit
        infer = fw.lib.jit(infer)

    def step():
        fw.sync(infer())
    return Workload(step, "latency", items=1, unit="seqs")
