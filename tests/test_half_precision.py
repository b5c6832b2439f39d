"""float16 and bfloat16 normalizations, softmaxes and variances are computed in float32 and
rounded once, as PyTorch computes them: as close to the exact result (float64 on the same
half-precision inputs) as PyTorch's own (rounded step by step in half precision, a
bfloat16 LayerNorm over short rows was off by up to 0.13 where PyTorch's was by 0.004,
a softmax by twice PyTorch's error), and the result has the input's dtype whatever the
weight's."""
import numpy as np
import pytest

import luban

torch = pytest.importorskip("torch")
TF, LF = torch.nn.functional, luban.nn.functional
HALF = ("float16", "bfloat16")

OPS = {
    "layer_norm": (lambda x, w, b: TF.layer_norm(x, (x.shape[-1],), w, b),
                   lambda x, w, b: LF.layer_norm(x, (x.shape[-1],), w, b)),
    "group_norm": (lambda x, w, b: TF.group_norm(x.reshape(6, 8, -1), 2, w[:8], b[:8]),
                   lambda x, w, b: LF.group_norm(x.reshape(6, 8, -1), 2, w[:8], b[:8])),
    "batch_norm": (lambda x, w, b: TF.batch_norm(x, None, None, w, b, training=True),
                   lambda x, w, b: LF.batch_norm(x, None, None, w, b, training=True)),
    "rms_norm": (lambda x, w, b: TF.rms_norm(x, (x.shape[-1],), w, eps=1e-6),
                 lambda x, w, b: LF.rms_norm(x, (x.shape[-1],), w, eps=1e-6)),
    "softmax": (lambda x, w, b: x.softmax(-1), lambda x, w, b: x.softmax(-1)),
    "log_softmax": (lambda x, w, b: x.log_softmax(-1), lambda x, w, b: x.log_softmax(-1)),
    "var": (lambda x, w, b: x.var(-1), lambda x, w, b: x.var(-1)),
}


def _ulp(dtype: str) -> float:
    return {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}[dtype]


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("cols", [3, 5, 64])
def test_half_precision_result_rounds_once(device, op, dtype, cols):
    rng = np.random.default_rng(cols)
    x = (rng.standard_normal((6, 8 * cols)) * 3 + 1).astype(np.float32)
    w, b = rng.standard_normal(8 * cols).astype(np.float32), rng.standard_normal(8 * cols).astype(np.float32)
    if op == "layer_norm" or op == "rms_norm" or op.endswith("softmax") or op == "var":
        x = x.reshape(-1, cols)  # short rows: the mean and variance of a few values
        w, b = w[:cols], b[:cols]
    tf, lf = OPS[op]
    tdt, ldt = getattr(torch, dtype), getattr(luban, dtype)
    halves = [torch.from_numpy(v).to(tdt) for v in (x, w, b)]
    exact = tf(*(h.double() for h in halves)).numpy()
    theirs = tf(*halves).double().numpy()
    got = lf(*(luban.tensor(v).cast(ldt) for v in (x, w, b)))
    assert got.dtype == ldt
    scale = np.abs(exact).max()
    ours, torch_err = np.abs(got.double().numpy() - exact).max() / scale, np.abs(theirs - exact).max() / scale
    assert ours <= 1.25 * max(torch_err, _ulp(dtype) / 4), \
        f"{op} {dtype}: relative error {ours:.3g}, PyTorch's {torch_err:.3g}"


@pytest.mark.parametrize("dtype", HALF)
def test_half_input_with_float32_weight_keeps_the_input_dtype(device, dtype):
    x = luban.tensor(np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)).cast(getattr(luban, dtype))
    w, b = luban.ones(8), luban.zeros(8)  # float32, as a model kept in float32 might pass them
    for out in (LF.layer_norm(x, (8,), w, b), LF.group_norm(x.reshape(4, 8, 1), 2, w, b),
                LF.batch_norm(x, None, None, w, b, training=True), LF.rms_norm(x, (8,), w)):
        assert out.dtype == getattr(luban, dtype)


def test_half_layer_norm_gradient_matches_torch(device):
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((16, 5)).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    g = rng.standard_normal((16, 5)).astype(np.float32)
    tx = torch.from_numpy(x).bfloat16().requires_grad_()
    tw = torch.from_numpy(w).bfloat16().requires_grad_()
    (TF.layer_norm(tx, (5,), tw) * torch.from_numpy(g).bfloat16()).sum().backward()
    lx, lw = (luban.tensor(v).cast(luban.bfloat16).detach().requires_grad_() for v in (x, w))
    (LF.layer_norm(lx, (5,), lw) * luban.tensor(g).cast(luban.bfloat16)).sum().backward()
    assert lx.grad.dtype == luban.bfloat16
    for got, want in ((lx.grad, tx.grad), (lw.grad, tw.grad)):
        np.testing.assert_allclose(got.float().numpy(), want.float().numpy(), rtol=3e-2, atol=3e-2)
