"""Attention, transformer, recurrent layers and losses against PyTorch.

Each luban module loads the torch module's state_dict (so the parameter names must match),
gets the same inputs, and must give the same outputs and the same gradients, for inputs and
parameters, of a random-weighted sum of its outputs. Shapes are small and sequences short:
every new kernel costs a compile on the cpu device.
"""
from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch

import luban
import luban.nn as nn
import luban.nn.functional as F
from helpers import assert_close

# torch deprecates mixing bool and float masks in one call; the tests mix them on purpose
pytestmark = pytest.mark.filterwarnings("ignore:Support for mismatched")

RTOL, ATOL = 1e-4, 1e-5
GRAD_RTOL, GRAD_ATOL = 1e-3, 1e-5


# ---- helpers ---------------------------------------------------------------------------------
def _pair(a, grad: bool = True) -> tuple:
    """The same array as a luban and a torch tensor; floating ones require grad."""
    a = np.asarray(a)
    grad = grad and a.dtype.kind == "f"
    return luban.tensor(a, requires_grad=grad), torch.tensor(a, requires_grad=grad)


def _randn(rng, *shape) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _load(lm, tm):
    """Copy torch's state_dict into luban's module (strict: every key must match)."""
    lm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    return lm


def _flat(out) -> list:
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    return [] if out is None else [out]


def _check(lout, tout, linputs=(), tinputs=(), lm=None, tm=None, seed=0, grad=True) -> None:
    """Compare outputs; then the gradients of sum(w * out) for random w over every output."""
    lo, to = _flat(lout), _flat(tout)
    assert len(lo) == len(to), f"{len(lo)} outputs, torch gives {len(to)}"
    for i, (a, b) in enumerate(zip(lo, to)):
        assert_close(a, b, rtol=RTOL, atol=ATOL, what=f"output {i}")
    if not grad:
        return
    rng = np.random.default_rng(seed)
    ltot, ttot = 0, 0
    for a, b in zip(lo, to):
        if b.requires_grad:
            w = _randn(rng, *b.shape)
            ltot, ttot = ltot + (a * luban.tensor(w)).sum(), ttot + (b * torch.tensor(w)).sum()
    ltot.backward()
    ttot.backward()
    for i, (a, b) in enumerate(zip(linputs, tinputs)):
        if b.requires_grad:
            assert a.grad is not None, f"input {i}: luban grad is None"
            assert_close(a.grad, b.grad, rtol=GRAD_RTOL, atol=GRAD_ATOL, what=f"grad of input {i}")
    if tm is not None:
        lp = dict(lm.named_parameters())
        assert set(lp) == {n for n, _ in tm.named_parameters()}
        for name, p in tm.named_parameters():
            assert_close(lp[name].grad, p.grad, rtol=GRAD_RTOL, atol=GRAD_ATOL, what=f"grad of {name}")


# ---- scaled_dot_product_attention ---------------------------------------------------------------
N, H, L, S, E = 2, 2, 3, 4, 4


def _sdpa_case(name: str, rng) -> tuple:
    """(q, k, v shapes, keyword arguments as numpy arrays / values)."""
    qs, ks = (N, H, L, E), (N, H, S, E)
    keep = rng.random((L, S)) < 0.6
    keep[:, 0] = True  # every query sees at least one key
    if name == "plain":
        return qs, ks, {}
    if name == "bool_mask":
        return qs, ks, {"attn_mask": keep}
    if name == "float_mask":  # (N, 1, L, S): broadcast over heads
        return qs, ks, {"attn_mask": _randn(rng, N, 1, L, S)}
    if name == "causal":
        return qs, ks, {"is_causal": True}
    if name == "dead_rows_bool":  # query 1 sees nothing: torch gives 0 and zero gradients
        keep[1] = False
        return qs, ks, {"attn_mask": keep}
    if name == "dead_rows_float":
        m = np.where(keep, 0.0, -np.inf).astype(np.float32)
        m[2] = -np.inf
        return qs, ks, {"attn_mask": m}
    if name == "scale":
        return qs, ks, {"scale": 0.3}
    if name == "gqa":  # 4 query heads share 2 key/value heads
        return (N, 4, L, E), ks, {"enable_gqa": True}
    raise ValueError(name)


@pytest.mark.parametrize("case", ["plain", "bool_mask", "float_mask", "causal", "dead_rows_bool", "dead_rows_float",
                                  "scale", "gqa"])
def test_sdpa(device, case):
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    qs, ks, kw = _sdpa_case(case, rng)
    (lq, tq), (lk, tk), (lv, tv) = _pair(_randn(rng, *qs)), _pair(_randn(rng, *ks)), _pair(_randn(rng, *ks))
    lkw = {k: luban.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    tkw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    lout = F.scaled_dot_product_attention(lq, lk, lv, **lkw)
    tout = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, **tkw)
    _check(lout, tout, (lq, lk, lv), (tq, tk, tv))


def test_sdpa_dropout_drops_attention_weights(device):
    """Dropout applies to the softmax weights (with a fresh mask from luban's generator)."""
    rng = np.random.default_rng(5)
    q, k, v = (luban.tensor(_randn(rng, N, H, n, E)) for n in (L, S, S))
    luban.manual_seed(5)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.4)
    luban.manual_seed(5)
    weights = F.dropout((q @ k.transpose(-2, -1) * (1 / math.sqrt(E))).softmax(-1), 0.4)
    assert_close(out, (weights @ v).numpy(), rtol=RTOL, atol=ATOL)
    assert not np.allclose(out.numpy(), F.scaled_dot_product_attention(q, k, v).numpy())


def test_sdpa_errors(device):
    q, k = luban.randn(1, 3, 4), luban.randn(1, 5, 4)
    with pytest.raises(RuntimeError, match="is_causal"):
        F.scaled_dot_product_attention(q, k, k, attn_mask=luban.ones(3, 5, dtype=luban.bool), is_causal=True)
    with pytest.raises(RuntimeError, match=r"query \(1, 3, 4\), key \(1, 5, 3\)"):
        F.scaled_dot_product_attention(q, luban.randn(1, 5, 3), luban.randn(1, 5, 3))


# ---- MultiheadAttention -------------------------------------------------------------------------
EMBED = 8


def _masks(rng, kind: str, batched: bool = True) -> tuple:
    """A key_padding_mask (N, S) and an attn_mask (L, S), True / -inf = masked; key 0 never is."""
    kpm = rng.random((N, S) if batched else (S,)) < 0.4
    kpm[..., 0] = False
    am = rng.random((L, S)) < 0.4
    am[:, 0] = False
    if kind == "float":
        return np.where(kpm, -np.inf, 0).astype(np.float32), _randn(rng, L, S)
    return kpm, am


MHA_CASES = {
    # name: (constructor kwargs, forward kwargs builder)
    "masks_weights": ({}, lambda rng: dict(zip(("key_padding_mask", "attn_mask"),
                                                (_masks(rng, "bool")[0], _masks(rng, "float")[1])))),
    "bool3d_no_weights": ({}, lambda rng: {"key_padding_mask": _masks(rng, "bool")[0], "need_weights": False,
                                           "attn_mask": np.tile(_masks(rng, "bool")[1], (N * 2, 1, 1))}),
    "bias_kv_zero_attn_per_head": ({"add_bias_kv": True, "add_zero_attn": True},
                                   lambda rng: dict(zip(("key_padding_mask", "attn_mask"), _masks(rng, "bool")),
                                                    average_attn_weights=False)),
    "kdim_vdim_no_bias": ({"kdim": 5, "vdim": 6, "bias": False},
                          lambda rng: {"key_padding_mask": _masks(rng, "float")[0]}),
    "eval_dropout": ({"dropout": 0.5}, lambda rng: {"key_padding_mask": _masks(rng, "bool")[0]}),
}


@pytest.mark.parametrize("case,batch_first", [("masks_weights", False), ("masks_weights", True),
                                               ("bias_kv_zero_attn_per_head", False),
                                               ("bias_kv_zero_attn_per_head", True), ("bool3d_no_weights", True),
                                               ("kdim_vdim_no_bias", True), ("eval_dropout", True)])
def test_multihead_attention(device, case, batch_first):
    ctor, fwd = MHA_CASES[case]
    rng = np.random.default_rng(len(case))
    torch.manual_seed(0)
    tm = torch.nn.MultiheadAttention(EMBED, 2, batch_first=batch_first, **ctor)
    lm = _load(nn.MultiheadAttention(EMBED, 2, batch_first=batch_first, **ctor), tm)
    if case == "eval_dropout":
        tm.eval(), lm.eval()
    shape = (lambda n, t, e: (n, t, e)) if batch_first else (lambda n, t, e: (t, n, e))
    arrays = [_randn(rng, *shape(N, L, EMBED)), _randn(rng, *shape(N, S, ctor.get("kdim", EMBED))),
              _randn(rng, *shape(N, S, ctor.get("vdim", EMBED)))]
    (lq, tq), (lk, tk), (lv, tv) = (_pair(a) for a in arrays)
    kw = fwd(rng)
    lkw = {k: luban.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    tkw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    _check(lm(lq, lk, lv, **lkw), tm(tq, tk, tv, **tkw), (lq, lk, lv), (tq, tk, tv), lm, tm)


def test_multihead_attention_unbatched_and_causal_self_attention(device):
    rng = np.random.default_rng(7)
    torch.manual_seed(1)
    tm = torch.nn.MultiheadAttention(EMBED, 2)
    lm = _load(nn.MultiheadAttention(EMBED, 2), tm)
    # unbatched (L, E) inputs with a (S,) padding mask and a per-head (H, L, S) mask
    (lq, tq), (lk, tk), (lv, tv) = _pair(_randn(rng, L, EMBED)), _pair(_randn(rng, S, EMBED)), \
        _pair(_randn(rng, S, EMBED))
    kpm = _masks(rng, "bool", batched=False)[0]
    am = _randn(rng, 2, L, S)
    _check(lm(lq, lk, lv, key_padding_mask=luban.tensor(kpm), attn_mask=luban.tensor(am)),
           tm(tq, tk, tv, key_padding_mask=torch.tensor(kpm), attn_mask=torch.tensor(am)),
           (lq, lk, lv), (tq, tk, tv), lm, tm)
    # self-attention (one tensor as query, key and value) with a causal mask and the hint
    lm.zero_grad(), tm.zero_grad()
    lx, tx = _pair(_randn(rng, L, N, EMBED))
    causal = np.triu(np.ones((L, L), dtype=bool), 1)
    _check(lm(lx, lx, lx, attn_mask=luban.tensor(causal), is_causal=True, need_weights=False),
           tm(tx, tx, tx, attn_mask=torch.tensor(causal), is_causal=True, need_weights=False),
           (lx,), (tx,), lm, tm)


@pytest.mark.parametrize("need_weights", [True, False])
def test_multihead_attention_fully_masked_batch(device, need_weights):
    """torch gives nan rows through the weights path and zeros through the SDPA path."""
    rng = np.random.default_rng(3)
    torch.manual_seed(2)
    tm = torch.nn.MultiheadAttention(EMBED, 2, batch_first=True)
    lm = _load(nn.MultiheadAttention(EMBED, 2, batch_first=True), tm)
    x = _randn(rng, N, L, EMBED)
    kpm = np.zeros((N, L), dtype=bool)
    kpm[1] = True
    with torch.no_grad():
        tout = tm(torch.tensor(x), torch.tensor(x), torch.tensor(x), key_padding_mask=torch.tensor(kpm),
                  need_weights=need_weights)
    lout = lm(luban.tensor(x), luban.tensor(x), luban.tensor(x), key_padding_mask=luban.tensor(kpm),
              need_weights=need_weights)
    _check(lout, tout, grad=False)


def test_multihead_attention_errors(device):
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiheadAttention(6, 4)
    m = nn.MultiheadAttention(EMBED, 2)
    with pytest.raises(RuntimeError, match="embed_dim=8"):
        m(luban.randn(3, 2, 6), luban.randn(3, 2, 6), luban.randn(3, 2, 6))
    with pytest.raises(RuntimeError, match="all 3-D"):
        m(luban.randn(3, 2, 8), luban.randn(3, 8), luban.randn(3, 8))
    with pytest.raises(RuntimeError, match="is_causal"):
        m(luban.randn(3, 2, 8), luban.randn(3, 2, 8), luban.randn(3, 2, 8), is_causal=True)


# ---- Transformer encoder ------------------------------------------------------------------------
def _encoder_inputs(rng, batch_first: bool) -> tuple:
    x = _randn(rng, N, L, EMBED) if batch_first else _randn(rng, L, N, EMBED)
    kpm = rng.random((N, L)) < 0.3
    kpm[:, 0] = False
    return x, np.triu(np.full((L, L), -np.inf, dtype=np.float32), 1), kpm


@pytest.mark.parametrize("norm_first,activation,batch_first", [(False, "relu", False), (True, "gelu", True),
                                                                (True, "relu", False), (False, "gelu", True)])
def test_transformer_encoder_layer(device, norm_first, activation, batch_first):
    rng = np.random.default_rng(11)
    torch.manual_seed(3)
    kw = dict(dim_feedforward=16, dropout=0.0, activation=activation, batch_first=batch_first,
              norm_first=norm_first)
    tm = torch.nn.TransformerEncoderLayer(EMBED, 2, **kw)
    lm = _load(nn.TransformerEncoderLayer(EMBED, 2, **kw), tm)
    x, mask, kpm = _encoder_inputs(rng, batch_first)
    (lx, tx) = _pair(x)
    _check(lm(lx, src_mask=luban.tensor(mask), src_key_padding_mask=luban.tensor(kpm)),
           tm(tx, src_mask=torch.tensor(mask), src_key_padding_mask=torch.tensor(kpm)), (lx,), (tx,), lm, tm)


def test_transformer_encoder_layer_eval_callable_activation(device):
    """Dropout is off in eval mode; a callable activation is used as given."""
    rng = np.random.default_rng(12)
    torch.manual_seed(4)
    tm = torch.nn.TransformerEncoderLayer(EMBED, 2, 16, dropout=0.3, activation=torch.nn.functional.silu,
                                          bias=False).eval()
    lm = _load(nn.TransformerEncoderLayer(EMBED, 2, 16, dropout=0.3, activation=F.silu, bias=False), tm).eval()
    (lx, tx) = _pair(_randn(rng, L, N, EMBED))
    _check(lm(lx), tm(tx), (lx,), (tx,), lm, tm)


def test_transformer_encoder(device):
    rng = np.random.default_rng(13)
    torch.manual_seed(5)
    make = dict(dim_feedforward=16, dropout=0.0, batch_first=True)
    tm = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(EMBED, 2, **make), 2,
                                     norm=torch.nn.LayerNorm(EMBED), enable_nested_tensor=False)
    lm = nn.TransformerEncoder(nn.TransformerEncoderLayer(EMBED, 2, **make), 2, norm=nn.LayerNorm(EMBED))
    layers = [dict(layer.named_parameters()) for layer in lm.layers]
    for name, p in layers[0].items():  # clones start equal, as deep copies do in torch
        assert_close(p, layers[1][name], rtol=0, atol=0, what=name)
    _load(lm, tm)
    x, mask, kpm = _encoder_inputs(rng, True)
    (lx, tx) = _pair(x)
    _check(lm(lx, mask=luban.tensor(mask), src_key_padding_mask=luban.tensor(kpm)),
           tm(tx, mask=torch.tensor(mask), src_key_padding_mask=torch.tensor(kpm)), (lx,), (tx,), lm, tm)
    # torch's eval-mode fast path (no grad, no padding mask) computes the same function
    tm.eval(), lm.eval()
    with torch.no_grad():
        tout = tm(torch.tensor(x))
    _check(lm(luban.tensor(x)), tout, grad=False)


# ---- recurrent layers ------------------------------------------------------------------------------
T, IN, HID = 3, 3, 4


def _rnn_pair(mode: str, **kw) -> tuple:
    torch.manual_seed(6)
    tm = getattr(torch.nn, mode)(IN, HID, **kw)
    return _load(getattr(nn, mode)(IN, HID, **kw), tm), tm


@pytest.mark.parametrize("mode,batch_first,initial,num_layers,bidirectional", [
    ("LSTM", False, False, 2, False), ("LSTM", True, True, 2, False), ("LSTM", False, True, 1, True),
    ("GRU", False, True, 2, False), ("GRU", True, False, 2, False), ("GRU", True, True, 1, True),
    ("RNN", True, True, 2, False)])
def test_recurrent(device, mode, batch_first, initial, num_layers, bidirectional):
    rng = np.random.default_rng(num_layers * 10 + batch_first)
    lm, tm = _rnn_pair(mode, num_layers=num_layers, batch_first=batch_first, bidirectional=bidirectional)
    lx, tx = _pair(_randn(rng, N, T, IN) if batch_first else _randn(rng, T, N, IN))
    ins_l, ins_t, state_l, state_t = [lx], [tx], None, None
    if initial:
        states = [_pair(_randn(rng, num_layers * (1 + bidirectional), N, HID))
                  for _ in range(2 if mode == "LSTM" else 1)]
        state_l, state_t = [s[0] for s in states], [s[1] for s in states]
        ins_l, ins_t = ins_l + state_l, ins_t + state_t
        if mode != "LSTM":
            state_l, state_t = state_l[0], state_t[0]
        else:
            state_l, state_t = tuple(state_l), tuple(state_t)
    _check(lm(lx, state_l), tm(tx, state_t), ins_l, ins_t, lm, tm)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_recurrent_unbatched(device, mode):
    rng = np.random.default_rng(21)
    lm, tm = _rnn_pair(mode, num_layers=2)
    lx, tx = _pair(_randn(rng, T, IN))
    states = [_pair(_randn(rng, 2, HID)) for _ in range(2 if mode == "LSTM" else 1)]
    ls, ts = tuple(s[0] for s in states), tuple(s[1] for s in states)
    if mode == "GRU":
        ls, ts = ls[0], ts[0]
    _check(lm(lx, ls), tm(tx, ts), [lx] + [s[0] for s in states], [tx] + [s[1] for s in states], lm, tm)


@pytest.mark.parametrize("mode", ["LSTMCell", "GRUCell", "RNNCell"])
def test_recurrent_cells(device, mode):
    rng = np.random.default_rng(22)
    lm, tm = _rnn_pair(mode)
    lx, tx = _pair(_randn(rng, N, IN))
    states = [_pair(_randn(rng, N, HID)) for _ in range(2 if mode == "LSTMCell" else 1)]
    ls, ts = tuple(s[0] for s in states), tuple(s[1] for s in states)
    if mode != "LSTMCell":
        ls, ts = ls[0], ts[0]
    _check(lm(lx, ls), tm(tx, ts), [lx] + [s[0] for s in states], [tx] + [s[1] for s in states], lm, tm)


def test_recurrent_init_names_and_errors(device):
    lstm, tm = nn.LSTM(IN, HID, num_layers=2, bidirectional=True), torch.nn.LSTM(IN, HID, 2, bidirectional=True)
    assert list(lstm.state_dict()) == list(tm.state_dict())
    bound = 1 / math.sqrt(HID)
    for name, p in lstm.named_parameters():
        a = p.numpy()
        assert np.all(np.abs(a) <= bound) and np.std(a) > bound / 4, f"{name} is not U(-1/sqrt(H), 1/sqrt(H))"
    with pytest.raises(RuntimeError, match="input_size. Expected 3, got 5"):
        lstm(luban.randn(T, N, 5))
    with pytest.raises(RuntimeError, match=r"expected h_0 size \(4, 2, 4\), got \(2, 2, 4\)"):
        lstm(luban.randn(T, N, IN), (luban.zeros(2, N, HID), luban.zeros(4, N, HID)))
    with pytest.raises(TypeError, match="tuple"):
        lstm(luban.randn(T, N, IN), luban.zeros(4, N, HID))
    with pytest.raises(RuntimeError, match="2-D"):
        nn.GRU(IN, HID)(luban.randn(T, IN), luban.zeros(1, N, HID))


# ---- losses ----------------------------------------------------------------------------------------------
C = 5


def _probs(rng, *shape) -> np.ndarray:
    e = np.exp(_randn(rng, *shape))
    return (e / e.sum(1 if len(shape) > 1 else 0, keepdims=True)).astype(np.float32)


def _targets(rng, *shape, ignore=None) -> np.ndarray:
    t = rng.integers(0, C, shape)
    if ignore is not None:
        t.reshape(-1)[::3] = ignore  # every third target ignored
    return t


# name: (loss class, constructor kwargs (arrays become tensors), input builder, target builder)
LOSS_CASES = {
    "ce_indices": ("CrossEntropyLoss", {}, lambda r: _randn(r, 4, C), lambda r: _targets(r, 4)),
    "ce_indices_nd": ("CrossEntropyLoss", {}, lambda r: _randn(r, 2, C, 3, 2), lambda r: _targets(r, 2, 3, 2)),
    "ce_unbatched": ("CrossEntropyLoss", {}, lambda r: _randn(r, C), lambda r: _targets(r)),
    "ce_ignore_default": ("CrossEntropyLoss", {}, lambda r: _randn(r, 6, C), lambda r: _targets(r, 6, ignore=-100)),
    "ce_ignore_1_weight": ("CrossEntropyLoss", {"ignore_index": 1, "weight": np.arange(1, C + 1, dtype=np.float32)},
                           lambda r: _randn(r, 6, C), lambda r: _targets(r, 6, ignore=1)),
    "ce_smoothing": ("CrossEntropyLoss", {"label_smoothing": 0.2}, lambda r: _randn(r, 2, C, 3),
                     lambda r: _targets(r, 2, 3)),
    "ce_smoothing_weight_ignore": ("CrossEntropyLoss", {"label_smoothing": 0.1, "weight": np.linspace(
        0.5, 2, C, dtype=np.float32)}, lambda r: _randn(r, 6, C), lambda r: _targets(r, 6, ignore=-100)),
    "ce_probs": ("CrossEntropyLoss", {}, lambda r: _randn(r, 4, C), lambda r: _probs(r, 4, C)),
    "ce_probs_nd_weight_smoothing": ("CrossEntropyLoss", {"label_smoothing": 0.3, "weight": np.linspace(
        0.5, 2, C, dtype=np.float32)}, lambda r: _randn(r, 2, C, 3), lambda r: _probs(r, 2, C, 3)),
    "nll_weight_ignore": ("NLLLoss", {"weight": np.linspace(2, 0.5, C, dtype=np.float32)},
                          lambda r: np.log(_probs(r, 6, C)), lambda r: _targets(r, 6, ignore=-100)),
    "nll_nd": ("NLLLoss", {}, lambda r: np.log(_probs(r, 2, C, 3)), lambda r: _targets(r, 2, 3)),
    "mse": ("MSELoss", {}, lambda r: _randn(r, 4, 3), lambda r: _randn(r, 4, 3)),
    "l1": ("L1Loss", {}, lambda r: _randn(r, 4, 3), lambda r: _randn(r, 4, 3)),
    "smooth_l1": ("SmoothL1Loss", {}, lambda r: _randn(r, 4, 3), lambda r: _randn(r, 4, 3)),
    "smooth_l1_beta": ("SmoothL1Loss", {"beta": 0.4}, lambda r: _randn(r, 4, 3), lambda r: _randn(r, 4, 3)),
    "smooth_l1_beta0": ("SmoothL1Loss", {"beta": 0.0}, lambda r: _randn(r, 4, 3), lambda r: _randn(r, 4, 3)),
    "huber": ("HuberLoss", {}, lambda r: 2 * _randn(r, 4, 3), lambda r: _randn(r, 4, 3)),
    "huber_delta": ("HuberLoss", {"delta": 0.4}, lambda r: _randn(r, 4, 3), lambda r: _randn(r, 4, 3)),
    "bce": ("BCELoss", {}, lambda r: r.uniform(0.05, 0.95, (4, 3)).astype(np.float32),
            lambda r: r.uniform(0, 1, (4, 3)).astype(np.float32)),
    "bce_weight": ("BCELoss", {"weight": np.array([0.5, 1.0, 2.0], dtype=np.float32)},
                   lambda r: r.uniform(0.05, 0.95, (4, 3)).astype(np.float32),
                   lambda r: (r.random((4, 3)) < 0.5).astype(np.float32)),
    "bce_logits": ("BCEWithLogitsLoss", {}, lambda r: 4 * _randn(r, 4, 3),
                   lambda r: r.uniform(0, 1, (4, 3)).astype(np.float32)),
    "bce_logits_weight_pos_weight": ("BCEWithLogitsLoss", {"weight": np.array([0.5, 1.0, 2.0], dtype=np.float32),
                                                           "pos_weight": np.array([3.0, 0.5, 1.0], dtype=np.float32)},
                                     lambda r: 30 * _randn(r, 4, 3), lambda r: (r.random((4, 3)) < 0.5)
                                     .astype(np.float32)),
    "kl_div": ("KLDivLoss", {}, lambda r: np.log(_probs(r, 4, C)), lambda r: _probs(r, 4, C)),
    "kl_div_zero_target": ("KLDivLoss", {}, lambda r: np.log(_probs(r, 4, C)),
                           lambda r: _probs(r, 4, C) * (r.random((4, C)) < 0.7)),
    "kl_div_log_target": ("KLDivLoss", {"log_target": True}, lambda r: np.log(_probs(r, 4, C)),
                          lambda r: np.log(_probs(r, 4, C))),
}


LOSS_PARAMS = [(case, r) for case, spec in LOSS_CASES.items()
               for r in ("none", "mean", "sum") + (("batchmean",) if spec[0] == "KLDivLoss" else ())]


@pytest.mark.filterwarnings("ignore:reduction")  # torch's and luban's warning for kl_div's 'mean'
@pytest.mark.parametrize("case,reduction", LOSS_PARAMS)
def test_loss(device, case, reduction):
    cls, ctor, make_input, make_target = LOSS_CASES[case]
    rng = np.random.default_rng(len(case))
    x, t = make_input(rng), make_target(rng)
    lctor = {k: luban.tensor(v) if isinstance(v, np.ndarray) else v for k, v in ctor.items()}
    tctor = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in ctor.items()}
    lm, tm = getattr(nn, cls)(reduction=reduction, **lctor), getattr(torch.nn, cls)(reduction=reduction, **tctor)
    assert list(lm.state_dict()) == list(tm.state_dict())
    # at target 0 torch's kl_div target gradient is nan (xlogy's), luban's finite: skip it there
    (lx, tx), (lt, tt) = _pair(x), _pair(t, grad=case != "kl_div_zero_target")
    _check(lm(lx, lt), tm(tx, tt), (lx, lt), (tx, tt))


def test_bce_saturated_inputs(device):
    """Inputs of exactly 0 and 1: the loss saturates at 100 like torch's, and gradients stay
    finite. There torch's input gradient is (x - t) / 1e-12, luban's that of the clamped loss."""
    x = np.array([[0.0, 1.0, 0.3], [1.0, 0.0, 0.6]], dtype=np.float32)
    t = np.array([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=np.float32)
    (lx, tx), (lt, tt) = _pair(x), _pair(t)
    lout, tout = F.binary_cross_entropy(lx, lt, reduction="none"), \
        torch.nn.functional.binary_cross_entropy(tx, tt, reduction="none")
    assert_close(lout, tout, rtol=RTOL, atol=ATOL)
    lout.sum().backward()
    tout.sum().backward()
    assert np.all(np.isfinite(lx.grad.numpy())) and np.all(np.isfinite(lt.grad.numpy()))
    assert_close(lx.grad.numpy()[:, 2], tx.grad[:, 2], rtol=RTOL, atol=ATOL, what="grad where 0 < x < 1")


@pytest.mark.parametrize("fn", ["mse_loss", "l1_loss", "huber_loss"])
def test_pointwise_loss_weight(device, fn):
    rng = np.random.default_rng(len(fn))
    x, t, w = _randn(rng, 4, 3), _randn(rng, 4, 3), rng.uniform(0.1, 2, (4, 3)).astype(np.float32)
    for reduction in ("none", "mean", "sum"):
        (lx, tx), (lt, tt), (lw, tw) = _pair(x), _pair(t), _pair(w)
        _check(getattr(F, fn)(lx, lt, reduction=reduction, weight=lw),
               getattr(torch.nn.functional, fn)(tx, tt, reduction=reduction, weight=tw), (lx, lt, lw), (tx, tt, tw))


def test_loss_functional_legacy_args(device):
    x, t = np.arange(6, dtype=np.float32).reshape(2, 3), np.ones((2, 3), dtype=np.float32)
    with pytest.warns(UserWarning, match="size_average"):
        out = F.mse_loss(luban.tensor(x), luban.tensor(t), size_average=False)
    assert_close(out, torch.nn.functional.mse_loss(torch.tensor(x), torch.tensor(t), reduction="sum"))


def test_loss_errors(device):
    x = luban.randn(4, C)
    with pytest.raises(RuntimeError, match=r"expected target of shape \(4,\) for input of shape \(4, 5\).*\(4, 2\)"):
        F.cross_entropy(x, luban.zeros(4, 2, dtype=luban.int64))
    with pytest.raises(RuntimeError, match=r"class-probability targets must have the input's shape \(4, 5\)"):
        F.cross_entropy(x, luban.zeros(4, 3))
    with pytest.raises(RuntimeError, match="integer dtype"):
        F.nll_loss(x, luban.zeros(4, dtype=luban.bool))
    with pytest.raises(RuntimeError, match=r"weight tensor should be defined.*\(3,\)"):
        F.cross_entropy(x, luban.zeros(4, dtype=luban.int64), weight=luban.ones(3))
    with pytest.raises(IndexError):  # an out-of-range class index, found when the loss is computed
        F.cross_entropy(x, luban.tensor([0, 1, 7, 2])).item()
    with pytest.raises(ValueError, match="'avg' is not a valid value for reduction"):
        F.l1_loss(x, x, reduction="avg")
    with pytest.raises(ValueError, match=r"target size \(4, 1\) must be the same as input size \(4, 5\)"):
        F.binary_cross_entropy_with_logits(x, luban.zeros(4, 1))
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(x, luban.zeros(4, dtype=luban.int64), label_smoothing=1.5)
    with pytest.warns(UserWarning, match="different to the input size"):
        F.mse_loss(x, luban.zeros(1, C))
    with pytest.raises(ValueError, match=r"weights and input must have the same size.*\(5,\)"):
        F.l1_loss(x, x, weight=luban.ones(C))
