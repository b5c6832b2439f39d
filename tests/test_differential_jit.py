"""Random small models and optimizers trained for a few steps with luban.jit and eagerly
from the same seed, on every device: the losses and the final parameters must agree. A
replay runs the captured kernels on buffers planned once by lifetime, GEMM epilogues on
finished blocks and packed weights cached; a slot shared while still live, or a state
tensor rebound to the wrong buffer, would give a silently different training run. The
fixed jit tests use three models; these draw widths (some past the cpu device's GEMM
claim threshold), depths, activations, normalizations, dropout and each optimizer with
its options."""
import numpy as np
import pytest

import luban
from luban import nn

F = nn.functional
CASES = 16
STEPS = 8


def _model(rng):
    width_in = int(rng.choice([3, 12, 40]))
    layers, w = [], width_in
    for _ in range(int(rng.integers(1, 4))):
        out = int(rng.choice([5, 16, 33, 64]))
        layers.append(nn.Linear(w, out, bias=bool(rng.random() < 0.8)))
        norm = str(rng.choice(["none", "layer", "batch"]))
        if norm == "layer":
            layers.append(nn.LayerNorm(out))
        elif norm == "batch":
            layers.append(nn.BatchNorm1d(out))
        layers.append({"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[
            str(rng.choice(["relu", "gelu", "tanh", "sigmoid"]))]())
        if rng.random() < 0.3:
            layers.append(nn.Dropout(0.25))
        w = out
    layers.append(nn.Linear(w, 4))
    return nn.Sequential(*layers), width_in


def _optimizer(rng, params):
    kind = str(rng.choice(["sgd", "adam", "adamw", "rmsprop", "adagrad"]))
    wd = float(rng.choice([0.0, 0.01]))
    if kind == "sgd":
        mom = float(rng.choice([0.0, 0.9]))
        return luban.optim.SGD(params, lr=0.05, momentum=mom, nesterov=bool(mom and rng.random() < 0.5),
                               weight_decay=wd)
    if kind == "adam":
        return luban.optim.Adam(params, lr=0.01, weight_decay=wd, amsgrad=bool(rng.random() < 0.3))
    if kind == "adamw":
        return luban.optim.AdamW(params, lr=0.01, weight_decay=0.1)
    if kind == "rmsprop":
        return luban.optim.RMSprop(params, lr=0.01, momentum=float(rng.choice([0.0, 0.5])), weight_decay=wd)
    return luban.optim.Adagrad(params, lr=0.05, weight_decay=wd)


def _train(seed, jit: bool):
    rng = np.random.default_rng(seed)
    luban.manual_seed(seed)
    model, width_in = _model(rng)
    opt = _optimizer(rng, model.parameters())
    batch = int(rng.choice([8, 32]))
    mse = bool(rng.random() < 0.4)
    data = np.random.default_rng(seed + 1)
    xs = [luban.tensor(data.standard_normal((batch, width_in)).astype(np.float32)) for _ in range(STEPS)]
    ys = [luban.tensor(data.standard_normal((batch, 4)).astype(np.float32)) if mse else
          luban.tensor(data.integers(0, 4, batch)) for _ in range(STEPS)]

    def step(x, y):
        opt.zero_grad()
        out = model(x)
        loss = F.mse_loss(out, y) if mse else F.cross_entropy(out, y)
        loss.backward()
        opt.step()
        return loss

    run = luban.jit(step) if jit else step
    losses = [float(run(x, y).numpy()) for x, y in zip(xs, ys)]
    return (losses, [p.numpy() for p in model.parameters()], [b.numpy() for b in model.buffers()],
            luban.get_rng_state(), run)


@pytest.mark.parametrize("seed", range(CASES))
def test_random_training_jit_matches_eager(device, seed):
    eager, jitted = _train(200 + seed, jit=False), _train(200 + seed, jit=True)
    np.testing.assert_allclose(jitted[0], eager[0], rtol=1e-6, atol=1e-7, err_msg=f"seed {seed}: losses")
    for what, got, want in (("parameter", jitted[1], eager[1]), ("buffer", jitted[2], eager[2])):
        assert len(got) == len(want)
        for i, (g, w) in enumerate(zip(got, want)):
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7, err_msg=f"seed {seed}: {what} {i}")
    np.testing.assert_array_equal(jitted[3], eager[3])  # dropout drew as many numbers
    step = jitted[4]  # captures until the tape settles, then replays (eager would test nothing)
    assert step.stats["replays"] >= STEPS - 5 and not step.reasons(), (step.stats, step.reasons())
