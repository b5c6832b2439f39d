"""Model-level conformance: small models train 20 steps on the device, and their losses
must follow the reference device's. Each builder returns the list of losses; weights,
data and dropout masks come from luban's seeded, device-independent generator."""
from __future__ import annotations

import luban
import luban.nn as nn
import luban.nn.functional as F

STEPS = 20


def mlp() -> list:
    """The W1 benchmark's shape, shrunk: MLP, ReLU, cross-entropy, SGD with momentum."""
    luban.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 48), nn.ReLU(), nn.Linear(48, 10))
    opt = luban.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = luban.randn(32, 64), luban.randint(0, 10, (32,))
    return _train(lambda: F.cross_entropy(model(x), y), opt)


def cnn() -> list:
    """Conv + BatchNorm + ReLU + pooling + a residual add, Adam."""
    luban.manual_seed(1)
    conv1, bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
    conv2, bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
    head = nn.Linear(8, 5)
    params = [p for m in (conv1, bn1, conv2, bn2, head) for p in m.parameters()]
    opt = luban.optim.Adam(params, lr=1e-2)
    x, y = luban.randn(8, 3, 10, 10), luban.randint(0, 5, (8,))

    def loss():
        h = F.relu(bn1(conv1(x)))
        h = F.max_pool2d(F.relu(h + bn2(conv2(h))), 2)
        return F.cross_entropy(head(h.mean((2, 3))), y)
    return _train(loss, opt)


def transformer() -> list:
    """A pre-norm causal transformer block with dropout on an embedding, AdamW."""
    luban.manual_seed(2)
    vocab, width, ctx = 17, 32, 12
    emb, pos = nn.Embedding(vocab, width), nn.Embedding(ctx, width)
    layer = nn.TransformerEncoderLayer(width, 4, 64, dropout=0.1, activation="gelu", batch_first=True,
                                       norm_first=True)
    head = nn.Linear(width, vocab)
    params = [p for m in (emb, pos, layer, head) for p in m.parameters()]
    opt = luban.optim.AdamW(params, lr=3e-3)
    tokens = luban.randint(0, vocab, (4, ctx + 1))
    mask = luban.ones(ctx, ctx).triu(1).bool()

    def loss():
        h = emb(tokens[:, :-1]) + pos(luban.arange(ctx))
        h = layer(h, src_mask=mask)
        return F.cross_entropy(head(h).reshape(-1, vocab), tokens[:, 1:].reshape(-1))
    return _train(loss, opt)


def _train(loss_fn, opt) -> list:
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


MODELS = {"mlp_sgd": mlp, "cnn_batchnorm_adam": cnn, "transformer_dropout_adamw": transformer}
