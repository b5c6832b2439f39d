"""luban.jit: jitted training steps match eager ones step for step, replays launch the
same kernels without scheduling, and what cannot be replayed runs eagerly or says why."""
import numpy as np
import pytest

import luban
from luban import debug, nn
from luban.schedule import cache as schedule_cache

F = nn.functional
STEPS = 20


def mlp():
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4))


def cnn():
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 5 * 5, 4))


class Block(nn.Module):
    """Pre-norm attention + MLP, with dropout on both residual branches."""
    def __init__(self, c=8, heads=2):
        super().__init__()
        self.ln1, self.ln2, self.heads = nn.LayerNorm(c), nn.LayerNorm(c), heads
        self.qkv, self.proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.mlp = nn.Sequential(nn.Linear(c, 2 * c), nn.GELU(), nn.Linear(2 * c, c))
        self.drop, self.head = nn.Dropout(0.2), nn.Linear(c, 4)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = (z.reshape(b, t, self.heads, c // self.heads).transpose(1, 2)
                   for z in self.qkv(self.ln1(x)).split(c, dim=-1))
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c)
        x = x + self.drop(self.proj(att))
        x = x + self.drop(self.mlp(self.ln2(x)))
        return self.head(x).mean(1)


def data(kind, batch=6):
    rng = np.random.default_rng(0)
    shape = {"mlp": (batch, 12), "cnn": (batch, 2, 5, 5), "block": (batch, 5, 8)}[kind]
    x = luban.tensor(rng.standard_normal(shape).astype(np.float32))
    return x, luban.tensor(rng.integers(0, 4, batch))


def setup(kind, optim):
    luban.manual_seed(0)
    model = {"mlp": mlp, "cnn": cnn, "block": Block}[kind]()
    opt = {"sgd": lambda p: luban.optim.SGD(p, lr=0.05, momentum=0.9),
           "adam": lambda p: luban.optim.Adam(p, lr=0.01),
           "adamw": lambda p: luban.optim.AdamW(p, lr=0.01, weight_decay=0.1)}[optim](model.parameters())

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return model, step


def train(kind, optim, jitted, steps=STEPS):
    model, step = setup(kind, optim)
    if jitted:
        step = luban.jit(step)
    x, y = data(kind)
    losses = [step(x, y).item() for _ in range(steps)]
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    return losses, state, step, luban.get_rng_state()


@pytest.mark.parametrize("kind,optim,replays", [
    ("mlp", "sgd", True),     # the MLP with SGD momentum
    ("cnn", "adam", True),    # Adam's step count and bias corrections live on the device
    ("block", "adamw", True),
    ("cnn", "sgd", True),     # BatchNorm running stats under replay
    ("block", "sgd", True),   # dropout under replay: new numbers every step, as eager draws them
])
def test_jitted_training_matches_eager(kind, optim, replays):
    eager, eager_state, _, eager_rng = train(kind, optim, jitted=False)
    jitted, jit_state, step, jit_rng = train(kind, optim, jitted=True)
    assert eager[-1] < eager[0]
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-7)
    for k in eager_state:  # parameters and buffers (running stats, num_batches_tracked)
        np.testing.assert_allclose(jit_state[k], eager_state[k], rtol=1e-6, atol=1e-7, err_msg=k)
    np.testing.assert_array_equal(jit_rng, eager_rng)
    if replays:
        assert step.stats["replays"] >= STEPS - 6 and not step.reasons()
    else:
        assert step.stats["replays"] == 0 and "host" in step.reasons()[0]


def test_dropout_draws_new_numbers_each_replay():
    luban.manual_seed(3)
    x = luban.ones(64)
    f = luban.jit(lambda x: F.dropout(x, 0.5) * 1.0)
    masks = [f(x).numpy() for _ in range(8)]
    assert f.stats["replays"] >= 5
    assert len({m.tobytes() for m in masks}) == 8
    luban.manual_seed(3)
    np.testing.assert_array_equal(masks, [F.dropout(x, 0.5).numpy() for _ in range(8)])


def test_new_shape_recaptures():
    _, step = setup("mlp", "sgd")
    ref_model, ref_step = setup("mlp", "sgd")
    jitted = luban.jit(step)
    for batch in (6, 6, 6, 6, 6, 3, 3, 3, 3, 3, 6):
        x, y = data("mlp", batch)
        np.testing.assert_allclose(jitted(x, y).item(), ref_step(x, y).item(), rtol=1e-6)
    assert jitted.stats["replays"] >= 2 and len(jitted.entries) >= 2


def test_a_step_replays_from_its_third_call_in_a_fresh_process(monkeypatch):
    """The walk's first sight of a type (a module's empty hook dicts and buffer-name sets)
    records it as every later walk does, so two captures suffice even in a process that
    has walked nothing before (the walk's table of kinds emptied here)."""
    import importlib
    monkeypatch.setattr(importlib.import_module("luban.jit"), "_KINDS", {})
    model, _ = setup("mlp", "sgd")
    jitted = luban.jit(lambda x: model(x))
    x, _ = data("mlp", 6)
    for _ in range(3):
        jitted(x)
    assert jitted.stats == {"captures": 2, "replays": 1, "eager": 0}


def test_signatures_are_bounded():
    f = luban.jit(lambda x: x * 2.0, max_signatures=2)
    for n in range(1, 6):
        np.testing.assert_allclose(f(luban.arange(n, dtype=luban.float32)).numpy(), np.arange(n) * 2.0)
    assert len(f.entries) == 2


def test_non_tensor_args_by_value():
    f = luban.jit(lambda x, k: x * k)
    x = luban.tensor(np.arange(4, dtype=np.float32))
    for k in (2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 2.0):
        np.testing.assert_allclose(f(x, k).numpy(), np.arange(4) * k)
    assert f.stats["replays"] >= 2


def test_cannot_replay_raises_clear_error():
    _, step = setup("cnn", "adam")
    strict = luban.jit(lambda x, y: step(x, y).item(), fallback=False)  # a host read inside
    with pytest.raises(luban.jit.JitError, match="reads device values on the host"):
        strict(*data("cnn"))
    inner = luban.jit(lambda x: x + 1.0)
    outer = luban.jit(lambda x: inner(x) * 2.0)
    with pytest.raises(luban.jit.JitError, match="inside another jitted function"):
        outer(luban.ones(3))


def _eager_and_replaying_mlp() -> tuple:
    """(eager step, jitted step, x, y) for the MLP, the jitted one already replaying."""
    _, eager_step = setup("mlp", "sgd")
    _, step = setup("mlp", "sgd")
    jitted = luban.jit(step)
    x, y = data("mlp")
    for _ in range(8):
        eager_step(x, y).item()
        jitted(x, y).item()
    assert jitted.stats["replays"] >= 1
    return eager_step, jitted, x, y


def test_replay_launches_the_same_kernels_without_scheduling(monkeypatch):
    eager_step, jitted, x, y = _eager_and_replaying_mlp()
    calls = []
    real = schedule_cache.schedule
    monkeypatch.setattr(schedule_cache, "schedule", lambda t: calls.append(1) or real(t))
    counts = {}
    for name, fn in (("eager", eager_step), ("jit", jitted)):
        calls.clear()
        debug.reset_kernel_count()
        loss = fn(x, y)
        scheduled = len(calls)
        loss.item()  # the loss: computed inside the jitted call, on this read in the eager one
        counts[name] = (debug.kernel_count(), scheduled)
    assert counts["jit"][0] == counts["eager"][0] > 0
    assert counts["jit"][1] == 0 < counts["eager"][1]  # a replay never schedules


def test_replay_is_profiled_like_eager():
    """A replay launches resolved programs directly, but under luban.profile it takes the
    timed path: every launched kernel is an event, with the same names as eager's."""
    eager_step, jitted, x, y = _eager_and_replaying_mlp()
    names = {}
    for name, fn in (("eager", eager_step), ("jit", jitted)):
        fn(x, y).item()
        debug.reset_kernel_count()
        with luban.profile() as prof:
            fn(x, y).item()
        names[name] = sorted(e.name for e in prof.events if e.kind == "kernel")
        assert len(names[name]) == debug.kernel_count() > 0
    assert names["jit"] == names["eager"]
