"""luban.nn layers, functionals, init and utils against PyTorch.

Layer checks load torch's state_dict (as NumPy arrays) into the luban layer, which also
pins the state_dict keys, then compare outputs and the gradients of inputs and
parameters for a random-weighted sum of the output. Every test runs on both devices.
"""
import math
import zlib

import numpy as np
import pytest
import torch

import luban
import luban.nn as nn
import luban.nn.functional as F

RTOL, ATOL = 1e-4, 1e-5


def close(got, expected, what="value", rtol=RTOL, atol=ATOL):
    g = got.numpy() if isinstance(got, luban.Tensor) else np.asarray(got)
    e = expected.detach().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    assert g.shape == e.shape, f"{what}: shape {g.shape} != torch's {e.shape}"
    np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, err_msg=what)


def rand_np(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def state_np(tm) -> dict:
    return {k: v.detach().numpy() for k, v in tm.state_dict().items()}


def weighted_sum(out, w):
    return (out * w).sum()


def graph_ops(t) -> list:
    """The ops of every node in t's lazy graph."""
    seen, stack, out = set(), [t.lazydata], []
    while stack:
        n = stack.pop()
        if id(n) not in seen:
            seen.add(id(n))
            out.append(n.op)
            stack.extend(n.src)
    return out


def check_layer(lm, tm, inputs, rng, rtol=RTOL, atol=ATOL):
    """Same weights, same inputs: outputs and all gradients agree with torch."""
    lm.load_state_dict(state_np(tm))
    assert [n for n, _ in lm.named_parameters()] == [n for n, _ in tm.named_parameters()]
    floats = [a.dtype.kind == "f" for a in inputs]
    lx = [luban.tensor(a, requires_grad=f) for a, f in zip(inputs, floats)]
    tx = [torch.tensor(a, requires_grad=f) for a, f in zip(inputs, floats)]
    lo, to = lm(*lx), tm(*tx)
    close(lo, to, "output", rtol, atol)
    w = rand_np(rng, tuple(to.shape))
    weighted_sum(lo, luban.tensor(w)).backward()
    weighted_sum(to, torch.tensor(w)).backward()
    for i, (l, t) in enumerate(zip(lx, tx)):
        if t.requires_grad:
            close(l.grad, t.grad, f"grad of input {i}", rtol, atol)
    lparams = dict(lm.named_parameters())
    for name, p in tm.named_parameters():
        close(lparams[name].grad, p.grad, f"grad of {name}", rtol, atol)


# ---- every layer against torch ------------------------------------------------------------
# (luban and torch build the layer from the same constructor call on their nn module)
LAYERS = [
    ("Linear", lambda m: m.Linear(5, 4), [(3, 5)]),
    ("Linear-nobias-3d", lambda m: m.Linear(5, 4, bias=False), [(2, 3, 5)]),
    ("Bilinear", lambda m: m.Bilinear(3, 4, 5), [(6, 3), (6, 4)]),
    ("Conv1d", lambda m: m.Conv1d(3, 4, 3, stride=2, padding=1), [(2, 3, 9)]),
    ("Conv2d", lambda m: m.Conv2d(3, 4, 3, padding=1), [(2, 3, 6, 5)]),
    ("Conv2d-groups", lambda m: m.Conv2d(4, 6, (3, 2), stride=(2, 1), dilation=(1, 2), groups=2, bias=False),
     [(2, 4, 7, 6)]),
    ("Conv2d-same-reflect", lambda m: m.Conv2d(2, 3, 4, padding="same", padding_mode="reflect"), [(1, 2, 6, 6)]),
    ("Conv2d-circular", lambda m: m.Conv2d(2, 3, 3, padding=1, padding_mode="circular"), [(2, 2, 5, 4)]),
    ("Conv2d-unbatched", lambda m: m.Conv2d(2, 3, 3), [(2, 5, 5)]),
    ("ConvTranspose2d", lambda m: m.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1),
     [(2, 4, 3, 4)]),
    ("ConvTranspose2d-groups", lambda m: m.ConvTranspose2d(4, 6, 2, stride=2, groups=2), [(1, 4, 3, 3)]),
    ("BatchNorm1d", lambda m: m.BatchNorm1d(4), [(6, 4)]),
    ("BatchNorm1d-3d", lambda m: m.BatchNorm1d(4, affine=False), [(3, 4, 5)]),
    ("BatchNorm2d", lambda m: m.BatchNorm2d(3), [(4, 3, 5, 5)]),
    ("LayerNorm", lambda m: m.LayerNorm((4, 5)), [(3, 4, 5)]),
    ("LayerNorm-noaffine", lambda m: m.LayerNorm(5, elementwise_affine=False), [(2, 3, 5)]),
    ("LayerNorm-nobias", lambda m: m.LayerNorm(5, bias=False), [(3, 5)]),
    ("GroupNorm", lambda m: m.GroupNorm(2, 6), [(2, 6, 3, 3)]),
    ("RMSNorm", lambda m: m.RMSNorm(5), [(3, 5)]),
    ("RMSNorm-2d-eps", lambda m: m.RMSNorm([4, 5], eps=1e-3), [(2, 4, 5)]),
    ("ReLU", lambda m: m.ReLU(), [(3, 4)]),
    ("GELU", lambda m: m.GELU(), [(3, 4)]),
    ("GELU-tanh", lambda m: m.GELU(approximate="tanh"), [(3, 4)]),
    ("SiLU", lambda m: m.SiLU(), [(3, 4)]),
    ("Tanh", lambda m: m.Tanh(), [(3, 4)]),
    ("Sigmoid", lambda m: m.Sigmoid(), [(3, 4)]),
    ("LeakyReLU", lambda m: m.LeakyReLU(0.2), [(3, 4)]),
    ("ELU", lambda m: m.ELU(0.5), [(3, 4)]),
    ("Softplus", lambda m: m.Softplus(beta=2.0), [(3, 4)]),
    ("Hardtanh", lambda m: m.Hardtanh(-0.5, 0.5), [(3, 4)]),
    ("Softmax", lambda m: m.Softmax(dim=1), [(3, 4)]),
    ("LogSoftmax", lambda m: m.LogSoftmax(dim=-1), [(2, 3, 4)]),
    ("MaxPool1d", lambda m: m.MaxPool1d(3, stride=2, padding=1), [(2, 3, 7)]),
    ("MaxPool2d", lambda m: m.MaxPool2d(2), [(2, 3, 4, 6)]),
    ("MaxPool2d-pad-ceil", lambda m: m.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), [(1, 2, 6, 5)]),
    ("AvgPool1d", lambda m: m.AvgPool1d(2), [(2, 3, 6)]),
    ("AvgPool2d", lambda m: m.AvgPool2d(2), [(2, 3, 4, 6)]),
    ("AvgPool2d-pad", lambda m: m.AvgPool2d(3, 2, 1, count_include_pad=False), [(1, 2, 5, 5)]),
    ("AdaptiveAvgPool1d", lambda m: m.AdaptiveAvgPool1d(3), [(2, 3, 7)]),
    ("AdaptiveAvgPool2d", lambda m: m.AdaptiveAvgPool2d((2, 3)), [(2, 3, 5, 7)]),
    ("Flatten", lambda m: m.Flatten(), [(2, 3, 4)]),
    ("Flatten-0-1", lambda m: m.Flatten(0, 1), [(2, 3, 4)]),
    ("Unflatten", lambda m: m.Unflatten(1, (2, 3)), [(4, 6)]),
    ("Upsample-nearest-x2", lambda m: m.Upsample(scale_factor=2), [(1, 2, 3, 4)]),
    ("Upsample-nearest-size", lambda m: m.Upsample(size=(5, 7)), [(1, 2, 3, 4)]),
    ("Upsample-nearest-down", lambda m: m.Upsample(scale_factor=0.5), [(1, 2, 6, 4)]),
    ("Upsample-bilinear", lambda m: m.Upsample(scale_factor=2, mode="bilinear"), [(1, 2, 3, 4)]),
    ("Upsample-bilinear-corners", lambda m: m.Upsample(size=(5, 6), mode="bilinear", align_corners=True),
     [(2, 1, 3, 4)]),
    ("Upsample-bilinear-down", lambda m: m.Upsample(size=(3, 2), mode="bilinear"), [(1, 2, 7, 5)]),
    ("Upsample-bilinear-1.5", lambda m: m.Upsample(scale_factor=1.5, mode="bilinear"), [(1, 1, 4, 5)]),
    ("Dropout-eval", lambda m: m.Dropout(0.5).eval(), [(3, 4)]),
    ("Identity", lambda m: m.Identity(), [(3, 4)]),
]


@pytest.mark.parametrize("name,make,shapes", LAYERS, ids=[c[0] for c in LAYERS])
def test_layer_matches_torch(device, name, make, shapes):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    torch.manual_seed(0)
    tm = make(torch.nn)
    lm = make(nn)
    assert repr(lm) == repr(tm)
    check_layer(lm, tm, [rand_np(rng, s) for s in shapes], rng)


@pytest.mark.parametrize("padding_idx", [None, 0, -2])
def test_embedding_matches_torch(device, padding_idx):
    rng = np.random.default_rng(1)
    torch.manual_seed(0)
    tm, lm = torch.nn.Embedding(10, 4, padding_idx=padding_idx), nn.Embedding(10, 4, padding_idx=padding_idx)
    assert repr(lm) == repr(tm)
    # repeated indices accumulate gradient; the padding row (0 or 8) gets none
    idx = np.array([[0, 3, 8, 3], [9, 0, 1, 8]], dtype=np.int64)
    check_layer(lm, tm, [idx], rng)
    if padding_idx is not None:
        assert not lm.weight.grad.numpy()[padding_idx].any()


def test_embedding_init_and_from_pretrained(device):
    luban.manual_seed(0)
    e = nn.Embedding(50, 8, padding_idx=3)
    w = e.weight.numpy()
    assert not w[3].any() and abs(float(np.delete(w, 3, 0).std()) - 1) < 0.1
    table = luban.tensor(rand_np(np.random.default_rng(0), (5, 3)))
    frozen = nn.Embedding.from_pretrained(table)
    assert not frozen.weight.requires_grad
    close(frozen(luban.tensor([4, 0])), table.numpy()[[4, 0]])
    assert nn.Embedding.from_pretrained(table, freeze=False).weight.requires_grad


def test_embedding_rejects_bad_indices(device):
    e = nn.Embedding(4, 2)
    with pytest.raises(IndexError):
        e(luban.tensor([4])).numpy()
    with pytest.raises(RuntimeError, match="integer index"):
        e(luban.tensor([1.0]))


# ---- functionals against torch --------------------------------------------------------------
# each entry calls the same function on luban.nn.functional and torch.nn.functional
FUNCTIONAL = [
    ("linear", lambda f, x, w, b: f.linear(x, w, b), [(3, 5), (4, 5), (4,)]),
    ("bilinear", lambda f, x, y, w: f.bilinear(x, y, w), [(2, 3), (2, 4), (5, 3, 4)]),
    ("conv1d", lambda f, x, w: f.conv1d(x, w, stride=2, padding=2, dilation=2), [(2, 3, 9), (4, 3, 3)]),
    ("conv2d", lambda f, x, w, b: f.conv2d(x, w, b, stride=2, padding=1), [(2, 3, 6, 5), (4, 3, 3, 3), (4,)]),
    ("conv_transpose2d", lambda f, x, w: f.conv_transpose2d(x, w, stride=2, padding=1), [(1, 3, 3, 4),
                                                                                         (3, 2, 3, 3)]),
    ("batch_norm-train", lambda f, x, w, b: f.batch_norm(x, None, None, w, b, training=True), [(4, 3, 2), (3,),
                                                                                             (3,)]),
    ("layer_norm", lambda f, x, w, b: f.layer_norm(x, (4,), w, b, eps=1e-3), [(3, 4), (4,), (4,)]),
    ("group_norm", lambda f, x, w, b: f.group_norm(x, 3, w, b), [(2, 6, 4), (6,), (6,)]),
    ("group_norm-noaffine", lambda f, x: f.group_norm(x, 1), [(2, 4, 3, 3)]),
    ("rms_norm", lambda f, x, w: f.rms_norm(x, (2, 3), w), [(4, 2, 3), (2, 3)]),
    ("normalize", lambda f, x: f.normalize(x), [(3, 4, 2)]),
    ("normalize-p1-dim-1", lambda f, x: f.normalize(x, p=1.0, dim=-1), [(3, 4)]),
    ("dropout-p0", lambda f, x: f.dropout(x, 0.0), [(3, 4)]),
    ("dropout-eval", lambda f, x: f.dropout(x, 0.7, training=False), [(3, 4)]),
    ("max_pool2d", lambda f, x: f.max_pool2d(x, 2, stride=1), [(1, 2, 4, 4)]),
    ("avg_pool2d", lambda f, x: f.avg_pool2d(x, (2, 3)), [(1, 2, 4, 6)]),
    ("max_pool1d", lambda f, x: f.max_pool1d(x, 2), [(2, 5, 6)]),
    ("avg_pool1d", lambda f, x: f.avg_pool1d(x, 3, stride=1, padding=1), [(2, 2, 5)]),
    ("adaptive_avg_pool2d", lambda f, x: f.adaptive_avg_pool2d(x, 3), [(1, 2, 7, 6)]),
    ("interpolate-nearest-1d", lambda f, x: f.interpolate(x, scale_factor=1.7), [(2, 3, 5)]),
    ("interpolate-nearest-3", lambda f, x: f.interpolate(x, size=(6, 9)), [(1, 1, 2, 3)]),
    ("interpolate-nearest-exact", lambda f, x: f.interpolate(x, size=(5, 3), mode="nearest-exact"),
     [(1, 2, 3, 4)]),
    ("interpolate-linear", lambda f, x: f.interpolate(x, size=7, mode="linear"), [(2, 2, 4)]),
    ("interpolate-linear-corners", lambda f, x: f.interpolate(x, scale_factor=2.5, mode="linear",
                                                              align_corners=True), [(1, 2, 4)]),
    ("interpolate-bilinear-recompute", lambda f, x: f.interpolate(x, scale_factor=(1.3, 0.6), mode="bilinear",
                                                                  recompute_scale_factor=True), [(1, 2, 5, 6)]),
    ("interpolate-area", lambda f, x: f.interpolate(x, size=(2, 3), mode="area"), [(1, 2, 5, 7)]),
    ("interpolate-trilinear", lambda f, x: f.interpolate(x, scale_factor=2, mode="trilinear"), [(1, 1, 2, 2, 3)]),
]


@pytest.mark.parametrize("name,fn,shapes", FUNCTIONAL, ids=[c[0] for c in FUNCTIONAL])
def test_functional_matches_torch(device, name, fn, shapes):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    arrs = [rand_np(rng, s) for s in shapes]
    lx = [luban.tensor(a, requires_grad=True) for a in arrs]
    tx = [torch.tensor(a, requires_grad=True) for a in arrs]
    lo, to = fn(F, *lx), fn(torch.nn.functional, *tx)
    close(lo, to, "output")
    w = rand_np(rng, tuple(to.shape))
    weighted_sum(lo, luban.tensor(w)).backward()
    weighted_sum(to, torch.tensor(w)).backward()
    for i, (l, t) in enumerate(zip(lx, tx)):
        close(l.grad, t.grad, f"grad of input {i}")


def test_embedding_and_one_hot_functional(device):
    rng = np.random.default_rng(2)
    table = rand_np(rng, (6, 3))
    idx = np.array([[5, 0], [2, 5]])
    lw, tw = luban.tensor(table, requires_grad=True), torch.tensor(table, requires_grad=True)
    lo, to = F.embedding(luban.tensor(idx), lw, padding_idx=5), torch.nn.functional.embedding(torch.tensor(idx), tw,
                                                                                             padding_idx=5)
    close(lo, to)
    lo.sum().backward()
    to.sum().backward()
    close(lw.grad, tw.grad)
    np.testing.assert_array_equal(F.one_hot(luban.tensor([0, 2, 1]), 4).numpy(),
                                  torch.nn.functional.one_hot(torch.tensor([0, 2, 1]), 4).numpy())


def test_interpolate_argument_errors(device):
    x = luban.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="only one of size or scale_factor"):
        F.interpolate(x, size=2, scale_factor=2)
    with pytest.raises(ValueError, match="align_corners option can only be set"):
        F.interpolate(x, scale_factor=2, align_corners=True)
    with pytest.raises(NotImplementedError, match="bilinear"):
        F.interpolate(luban.zeros(1, 1, 4), scale_factor=2, mode="bilinear")


def test_interpolate_uses_views_for_integer_factors(device):
    """Integer nearest up/downscaling needs no gather: the graph holds only views."""
    from luban.graph.ops import Op
    x = luban.tensor(rand_np(np.random.default_rng(0), (1, 2, 4, 6)))
    assert Op.GATHER not in graph_ops(F.interpolate(x, scale_factor=3))
    assert Op.GATHER not in graph_ops(F.interpolate(x, scale_factor=0.5))
    assert Op.GATHER in graph_ops(F.interpolate(x, size=(5, 5)))


# ---- batch norm: running statistics ------------------------------------------------------------
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_running_stats_match_torch(device, momentum):
    rng = np.random.default_rng(3)
    torch.manual_seed(0)
    tm, lm = torch.nn.BatchNorm2d(3, momentum=momentum), nn.BatchNorm2d(3, momentum=momentum)
    with torch.no_grad():
        tm.weight.uniform_(0.5, 1.5)
        tm.bias.uniform_(-0.5, 0.5)
    lm.load_state_dict(state_np(tm))
    for step in range(3):
        x = rand_np(rng, (4, 3, 2, 3)) * (step + 1) + step
        close(lm(luban.tensor(x)), tm(torch.tensor(x)), f"training output at step {step}")
    for key in ("running_mean", "running_var"):
        close(getattr(lm, key), getattr(tm, key), key)
    assert lm.num_batches_tracked.item() == 3 and lm.num_batches_tracked.dtype is luban.int64
    lm.eval()
    tm.eval()
    x = rand_np(rng, (2, 3, 2, 2))
    check_layer(lm, tm, [x], rng)


def test_batchnorm_running_stats_graph_stays_shallow(device):
    """Each step realizes the previous update, so a long loop never stacks a deep graph."""
    bn, rng = nn.BatchNorm1d(3, momentum=None), np.random.default_rng(11)
    sizes = []
    for _ in range(4):
        bn(luban.tensor(rand_np(rng, (5, 3))))
        sizes.append([len(graph_ops(b)) for b in bn.buffers()])
    assert sizes[1] == sizes[2] == sizes[3]


def test_batchnorm_without_running_stats(device):
    rng = np.random.default_rng(4)
    tm, lm = torch.nn.BatchNorm1d(3, track_running_stats=False), nn.BatchNorm1d(3, track_running_stats=False)
    assert lm.running_mean is None and list(lm.state_dict()) == list(tm.state_dict())
    lm.eval()
    tm.eval()  # no running stats: eval mode normalizes with the batch statistics
    check_layer(lm, tm, [rand_np(rng, (5, 3))], rng)


def test_batch_norm_functional_updates_in_place(device):
    rng = np.random.default_rng(5)
    x = rand_np(rng, (6, 2))
    lm, lv = luban.zeros(2), luban.ones(2)
    tmean, tvar = torch.zeros(2), torch.ones(2)
    F.batch_norm(luban.tensor(x), lm, lv, training=True, momentum=0.3)
    torch.nn.functional.batch_norm(torch.tensor(x), tmean, tvar, training=True, momentum=0.3)
    close(lm, tmean, "running_mean")
    close(lv, tvar, "running_var (unbiased)")


def test_batchnorm_errors(device):
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected 4D input with 3 channels"):
        nn.BatchNorm2d(3)(luban.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(luban.zeros(1, 3))


# ---- dropout -------------------------------------------------------------------------------
def test_dropout_identity_cases(device):
    x = luban.tensor(rand_np(np.random.default_rng(6), (4, 5)))
    assert nn.Dropout(0.0)(x) is x
    d = nn.Dropout(0.5)
    d.eval()
    assert d(x) is x
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


def test_dropout_training_statistics_and_reproducibility(device):
    p, n = 0.3, 20000
    x = luban.ones(n, requires_grad=True)
    luban.manual_seed(7)
    y = F.dropout(x, p)
    out = y.numpy()
    zero = out == 0
    assert abs(zero.mean() - p) < 0.02
    np.testing.assert_allclose(out[~zero], 1 / (1 - p), rtol=1e-6)
    y.backward(luban.ones(n))
    np.testing.assert_array_equal(x.grad.numpy(), out)  # gradient is the same mask and scale
    luban.manual_seed(7)
    np.testing.assert_array_equal(F.dropout(x, p).numpy(), out)
    assert not np.array_equal(F.dropout(x, p).numpy(), out)  # the next draw differs
    assert not F.dropout(x, 1.0).numpy().any()


def test_dropout2d_zeroes_whole_channels(device):
    luban.manual_seed(8)
    out = nn.Dropout2d(0.5)(luban.ones(8, 16, 3, 3)).numpy()
    per_channel = out.reshape(8, 16, -1)
    assert (per_channel.min(-1) == per_channel.max(-1)).all()
    assert set(np.unique(out)) == {0.0, 2.0}


# ---- init ----------------------------------------------------------------------------------
def test_calculate_gain_matches_torch():
    for nl, param in [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
                      ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None)]:
        assert math.isclose(nn.init.calculate_gain(nl, param), torch.nn.init.calculate_gain(nl, param))
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        nn.init.calculate_gain("swish")


UNIFORM_INITS = [  # (name, call, bound for a (200, 100, 3) tensor: fan_in 300, fan_out 600)
    ("uniform_", lambda t: nn.init.uniform_(t, -0.3, 0.7), (-0.3, 0.7)),
    ("xavier_uniform_", lambda t: nn.init.xavier_uniform_(t, gain=2.0), 2.0 * math.sqrt(6 / 900)),
    ("kaiming_uniform_", lambda t: nn.init.kaiming_uniform_(t, a=math.sqrt(5)), math.sqrt(6 / 6 / 300)),
    ("kaiming_uniform_-fan_out-relu", lambda t: nn.init.kaiming_uniform_(t, mode="fan_out", nonlinearity="relu"),
     math.sqrt(6 / 600)),
]


@pytest.mark.parametrize("name,fn,bound", UNIFORM_INITS, ids=[c[0] for c in UNIFORM_INITS])
def test_uniform_inits_bounds_and_spread(device, name, fn, bound):
    lo, hi = bound if isinstance(bound, tuple) else (-bound, bound)
    t = nn.Parameter(luban.zeros(200, 100, 3))
    assert fn(t) is t and t.requires_grad and t.is_leaf
    a = t.numpy()
    assert a.min() >= lo and a.max() <= hi
    assert abs(a.std() - (hi - lo) / math.sqrt(12)) < 0.02 * (hi - lo)
    assert abs(a.mean() - (hi + lo) / 2) < 0.01 * (hi - lo)


NORMAL_INITS = [  # (name, call, mean, std) for a (200, 100, 3) tensor
    ("normal_", lambda t: nn.init.normal_(t, 0.5, 2.0), 0.5, 2.0),
    ("xavier_normal_", lambda t: nn.init.xavier_normal_(t), 0.0, math.sqrt(2 / 900)),
    ("kaiming_normal_", lambda t: nn.init.kaiming_normal_(t, nonlinearity="relu"), 0.0, math.sqrt(2 / 300)),
    ("kaiming_normal_-tanh-fan_out", lambda t: nn.init.kaiming_normal_(t, mode="fan_out", nonlinearity="tanh"),
     0.0, 5 / 3 / math.sqrt(600)),
]


@pytest.mark.parametrize("name,fn,mean,std", NORMAL_INITS, ids=[c[0] for c in NORMAL_INITS])
def test_normal_inits_statistics(device, name, fn, mean, std):
    a = fn(luban.zeros(200, 100, 3)).numpy()
    assert abs(a.std() - std) < 0.02 * std
    assert abs(a.mean() - mean) < 0.02 * std


def test_trunc_normal(device):
    a = nn.init.trunc_normal_(luban.zeros(300, 200), mean=1.0, std=2.0, a=0.0, b=3.0).numpy()
    assert a.min() >= 0.0 and a.max() <= 3.0
    # moments of N(1, 2) truncated to [0, 3]: alpha = -0.5, beta = 1
    alpha, beta = -0.5, 1.0
    pdf = [math.exp(-v * v / 2) / math.sqrt(2 * math.pi) for v in (alpha, beta)]
    z = (math.erf(beta / math.sqrt(2)) - math.erf(alpha / math.sqrt(2))) / 2
    mean = 1.0 + 2.0 * (pdf[0] - pdf[1]) / z
    var = 4.0 * (1 + (alpha * pdf[0] - beta * pdf[1]) / z - ((pdf[0] - pdf[1]) / z) ** 2)
    assert abs(a.mean() - mean) < 0.01 and abs(a.std() - math.sqrt(var)) < 0.01


def test_constant_inits(device):
    t = nn.Parameter(luban.zeros(3, 4))
    np.testing.assert_array_equal(nn.init.constant_(t, 0.25).numpy(), np.full((3, 4), 0.25))
    np.testing.assert_array_equal(nn.init.ones_(t).numpy(), np.ones((3, 4)))
    np.testing.assert_array_equal(nn.init.zeros_(t).numpy(), np.zeros((3, 4)))
    np.testing.assert_array_equal(nn.init.eye_(t).numpy(), np.eye(3, 4))
    assert t.requires_grad and t.is_leaf
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        nn.init.xavier_uniform_(luban.zeros(5))


def test_default_layer_inits(device):
    luban.manual_seed(0)
    lin, conv = nn.Linear(400, 300), nn.Conv2d(16, 32, 3)
    for w, b, fan_in in ((lin.weight, lin.bias, 400), (conv.weight, conv.bias, 16 * 9)):
        bound = 1 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) gives the same bound as the bias
        for t in (w, b):
            a = t.numpy()
            assert a.min() >= -bound and a.max() <= bound and a.max() > 0.9 * bound
    bn = nn.BatchNorm2d(4)
    assert (bn.weight.numpy() == 1).all() and not bn.bias.numpy().any()
    assert (nn.LayerNorm(3).weight.numpy() == 1).all() and (nn.RMSNorm(3).weight.numpy() == 1).all()
    luban.manual_seed(0)
    np.testing.assert_array_equal(nn.Linear(400, 300).weight.numpy(), lin.weight.numpy())  # reproducible


# ---- utils ---------------------------------------------------------------------------------
@pytest.mark.parametrize("norm_type,max_norm", [(2.0, 1.0), (1.0, 0.5), (math.inf, 0.1), (2.0, 1e3)])
def test_clip_grad_norm_matches_torch(device, norm_type, max_norm):
    rng = np.random.default_rng(9)
    grads = [rand_np(rng, s) for s in [(3, 4), (4,), (2, 2, 2)]]
    lp = [nn.Parameter(luban.zeros(*g.shape)) for g in grads]
    tp = [torch.nn.Parameter(torch.zeros(g.shape)) for g in grads]
    for l, t, g in zip(lp, tp, grads):
        l.grad, t.grad = luban.tensor(g), torch.tensor(g)
    total = nn.utils.clip_grad_norm_(lp, max_norm, norm_type)
    close(total, torch.nn.utils.clip_grad_norm_(tp, max_norm, norm_type), "total norm")
    for i, (l, t) in enumerate(zip(lp, tp)):
        close(l.grad, t.grad, f"clipped grad {i}")


def test_clip_grad_edge_cases(device):
    p = nn.Parameter(luban.zeros(3))
    assert nn.utils.clip_grad_norm_([p], 1.0).item() == 0.0  # no grads
    p.grad = luban.tensor([1.0, math.inf, 0.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_(p, 1.0, error_if_nonfinite=True)
    p.grad = luban.tensor([-3.0, 0.5, 2.0])
    nn.utils.clip_grad_value_(p, 1.0)
    np.testing.assert_array_equal(p.grad.numpy(), [-1.0, 0.5, 1.0])


def test_parameters_to_vector_roundtrip(device):
    m = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    vec = nn.utils.parameters_to_vector(m.parameters())
    assert tuple(vec.shape) == (11,)
    nn.utils.vector_to_parameters(vec * 2, m.parameters())
    np.testing.assert_allclose(nn.utils.parameters_to_vector(m.parameters()).numpy(), vec.numpy() * 2)
    assert all(p.requires_grad and p.is_leaf for p in m.parameters())
    with pytest.raises(RuntimeError, match="11 elements"):
        nn.utils.vector_to_parameters(vec[:5], m.parameters())


# ---- Module API ----------------------------------------------------------------------------
def small_net(m):
    return m.Sequential(m.Conv2d(3, 4, 3, padding=1), m.BatchNorm2d(4), m.ReLU(), m.MaxPool2d(2), m.Flatten(),
                        m.Linear(16, 8), m.LayerNorm(8), m.GELU(), m.Dropout(0.1), m.Linear(8, 2))


def test_architecture_names_and_repr_match_torch():
    tm, lm = small_net(torch.nn), small_net(nn)
    assert [n for n, _ in lm.named_parameters()] == [n for n, _ in tm.named_parameters()]
    assert list(lm.state_dict()) == list(tm.state_dict())
    assert [n for n, _ in lm.named_buffers()] == [n for n, _ in tm.named_buffers()]
    assert [tuple(p.shape) for p in lm.parameters()] == [tuple(p.shape) for p in tm.parameters()]
    assert repr(lm) == repr(tm)
    emb = (nn.Embedding(5, 2, padding_idx=1), torch.nn.Embedding(5, 2, padding_idx=1))
    assert repr(emb[0]) == repr(emb[1])
    assert repr(nn.Conv2d(2, 4, 3, bias=False, padding_mode="reflect", padding=1, groups=2)) == \
        repr(torch.nn.Conv2d(2, 4, 3, bias=False, padding_mode="reflect", padding=1, groups=2))


def test_network_forward_backward_matches_torch(device):
    rng = np.random.default_rng(10)
    torch.manual_seed(0)
    tm, lm = small_net(torch.nn), small_net(nn)
    tm[8].p = lm[8].p = 0.0  # dropout's draws differ between the libraries
    check_layer(lm, tm, [rand_np(rng, (2, 3, 4, 4))], rng, rtol=1e-3, atol=1e-4)


def test_train_eval_zero_grad_apply_to(device):
    net = small_net(nn)
    assert net.training and all(m.training for m in net.modules())
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net(luban.zeros(2, 3, 4, 4)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())

    def fill(m):
        if isinstance(m, nn.Linear):
            nn.init.constant_(m.weight, 0.5)
    assert net.apply(fill) is net
    assert (net[5].weight.numpy() == 0.5).all() and (net[9].weight.numpy() == 0.5).all()
    net.to(luban.float64)
    assert all(p.dtype is luban.float64 for p in net.parameters())
    assert net[1].running_var.dtype is luban.float64 and net[1].num_batches_tracked.dtype is luban.int64
    assert net(luban.zeros(2, 3, 4, 4, dtype=luban.float64)).dtype is luban.float64


@pytest.mark.parametrize("make", [lambda: nn.ReLU(inplace=True), lambda: nn.LeakyReLU(0.1, inplace=True),
                                  lambda: nn.SiLU(inplace=True), lambda: nn.Dropout(0.0, inplace=True)])
def test_inplace_activations_rebind_their_input(device, make):
    a_np = rand_np(np.random.default_rng(12), (3, 4))
    a = luban.tensor(a_np, requires_grad=True)
    x = a * 2
    y = make()(x)
    assert y is x  # the caller's tensor now holds the result, as in PyTorch
    y.sum().backward()
    ta = torch.tensor(a_np, requires_grad=True)
    layer = {"ReLU": torch.nn.ReLU(), "LeakyReLU": torch.nn.LeakyReLU(0.1), "SiLU": torch.nn.SiLU(),
             "Dropout": torch.nn.Dropout(0.0)}[type(make()).__name__]
    layer(ta * 2).sum().backward()
    close(a.grad, ta.grad)


def test_layer_errors_name_the_layer_and_shapes(device):
    with pytest.raises(RuntimeError, match=r"Linear: expected input with 20 features \(in_features\), got shape "
                                           r"\(4, 30\)"):
        nn.Linear(20, 5)(luban.zeros(4, 30))
    with pytest.raises(RuntimeError, match=r"Conv2d: .* with 3 channels \(in_channels\), got shape \(1, 4, 5, 5\)"):
        nn.Conv2d(3, 2, 3)(luban.zeros(1, 4, 5, 5))
    with pytest.raises(RuntimeError, match=r"layer_norm: given normalized_shape=\[5\]"):
        nn.LayerNorm(5)(luban.zeros(2, 4))
    with pytest.raises(ValueError, match="in_channels .* divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
