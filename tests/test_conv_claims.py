"""Convolution kernels as pattern claims: the forward conv, its input gradient (a
correlation of the padded, stride-dilated output gradient with the flipped weight) and
its weight gradient (a long reduce over batch and pixels) are each a Contraction over a
zero-padded view, and the cpu device runs each as im2col + BLAS. Every case is compared with
torch, with claims on and off; the claimed-launch counts make the test fail if a claim
silently stops applying."""
import numpy as np
import pytest

import luban
import luban.nn.functional as F
from luban.codegen.patterns import Contraction, recognize
from luban.runtime import get_device
from luban.schedule.fusion import create_schedule

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.xdist_group("patterns")


@pytest.fixture(params=["claims", "no_claims"])
def claims(request, monkeypatch):
    if request.param == "no_claims":
        monkeypatch.setenv("LUBAN_NO_CLAIMS", "1")
    else:
        monkeypatch.delenv("LUBAN_NO_CLAIMS", raising=False)
    dev = get_device("cpu")
    start = dev.claimed_launches
    yield request.param == "claims", lambda: dev.claimed_launches - start


# name -> (nd, x shape, weight shape, kwargs, claimed launches with claims on: forward, input
# gradient and weight gradient where the cpu device takes them; a strided conv's input
# gradient is one correlation per phase, those big enough claimed)
CASES = {
    "2d_pad": (2, (8, 4, 12, 12), (6, 4, 3, 3), dict(padding=1), 3),
    "2d_stride": (2, (8, 4, 13, 13), (6, 4, 3, 3), dict(stride=2, padding=1), 3),
    "2d_dilation": (2, (6, 3, 14, 14), (5, 3, 3, 3), dict(padding=2, dilation=2), 3),
    "2d_groups": (2, (8, 6, 12, 12), (6, 3, 3, 3), dict(padding=1, groups=2), 3),
    "2d_nopad_rect": (2, (8, 4, 12, 10), (5, 4, 2, 3), dict(stride=(1, 2)), 3),
    "2d_batch1": (2, (1, 8, 24, 24), (8, 8, 3, 3), dict(padding=1), 3),
    "2d_one_channel": (2, (16, 1, 16, 16), (1, 1, 3, 3), dict(padding=1), 3),
    "1d": (1, (16, 4, 100), (6, 4, 5), dict(padding=2, stride=2), 4),
    "1d_dilation_groups": (1, (16, 4, 120), (4, 2, 3), dict(padding=3, dilation=3, groups=2), 3),
    # more weights than batch*pixels
    "2d_wide_long_reduce": (2, (16, 16, 16, 16), (64, 16, 3, 3), dict(padding=1), 3),
    "tiny": (2, (1, 1, 5, 5), (1, 1, 3, 3), dict(padding=1), 0),
}


def _run(case, dtype, noncontig):
    nd, xs, ws, kw, _ = CASES[case]
    rng = np.random.default_rng(len(case))
    x = rng.standard_normal(xs[:1] + xs[2:] + xs[1:2] if noncontig else xs).astype(dtype)
    if noncontig:  # channels-last storage, read as NCHW: a permuted view under the windows
        x = np.moveaxis(x, -1, 1)
    w = rng.standard_normal(ws).astype(dtype)
    conv = F.conv1d if nd == 1 else F.conv2d
    tconv = torch.nn.functional.conv1d if nd == 1 else torch.nn.functional.conv2d
    lx = luban.tensor(np.ascontiguousarray(np.moveaxis(x, 1, -1)) if noncontig else x, device="cpu")
    if noncontig:
        lx = lx.permute(0, nd + 1, *range(1, nd + 1))
    lx = lx.detach().requires_grad_()
    lw = luban.tensor(w, device="cpu", requires_grad=True)
    y = conv(lx, lw, **kw)
    g = rng.standard_normal(tuple(y.shape)).astype(dtype)
    (y * luban.tensor(g, device="cpu")).sum().backward()
    got = [y.numpy(), lx.grad.numpy(), lw.grad.numpy()]
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    ty = tconv(tx, tw, **kw)
    (ty * torch.tensor(g)).sum().backward()
    return got, [ty.detach().numpy(), tx.grad.numpy(), tw.grad.numpy()]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(CASES))
def test_conv_forward_and_gradients(case, dtype, claims):
    enabled, claimed = claims
    got, want = _run(case, dtype, noncontig=False)
    tol = 1e-10 if dtype == np.float64 else 1e-4
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.abs(b).max())
    assert claimed() == (CASES[case][-1] if enabled else 0)


@pytest.mark.parametrize("case", ["2d_pad", "2d_stride", "1d"])
def test_non_contiguous_input(case, claims):
    enabled, claimed = claims
    got, want = _run(case, np.float32, noncontig=True)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())
    assert (claimed() >= 1) if enabled else claimed() == 0


def test_weight_gradient_is_a_contraction_over_padded_input():
    rng = np.random.default_rng(0)
    x = luban.tensor(rng.standard_normal((4, 3, 8, 8)).astype(np.float32), device="cpu")
    g = luban.tensor(rng.standard_normal((4, 5, 8, 8)).astype(np.float32), device="cpu")
    w = luban.tensor(rng.standard_normal((5, 3, 3, 3)).astype(np.float32), device="cpu", requires_grad=True)
    (F.conv2d(x, w, padding=1) * g).sum().backward()
    items = [it for it in create_schedule([w.grad.lazydata]) if it.kernel is not None]
    assert [tuple(it.out.shape) for it in items][0] == (4, 10, 10, 3)  # x padded, channels last
    c, rest = recognize(items[-1].kernel)
    assert isinstance(c, Contraction) and rest is None and c.a.padded is None and c.b.padded is None
    # summed over batch and the 8x8 pixels; out channel from g only; in channel and taps from x
    assert sorted(zip(c.sizes, c.roles)) == sorted([(4, "k"), (5, "m"), (8, "k"), (8, "k"), (3, "n"),
                                                     (3, "n"), (3, "n")]) or \
        sorted(zip(c.sizes, c.roles)) == sorted([(4, "k"), (5, "n"), (8, "k"), (8, "k"), (3, "m"),
                                                  (3, "m"), (3, "m")])
    # x's view: its in-channel dim (the last of the weight's dims in the sum) has stride 1
    xv = c.a if c.roles[c.sizes.index(5)] == "n" else c.b
    assert [st for st, r in zip(xv.strides, c.roles) if r != "k" and st != 0][-1] == 1


@pytest.mark.parametrize("kernel, stride, padding", [((3, 3), (2, 2), (1, 1)), ((5, 2), (3, 2), (2, 0)),
                                                     ((1, 1), (2, 3), (0, 0)), ((2, 4), (4, 2), (1, 2))])
def test_strided_input_gradient_by_phases(kernel, stride, padding):
    """A strided conv's input gradient runs as one stride-1 correlation per phase of the
    input (no zeros inserted into the output gradient), including strides wider than
    the kernel (phases no tap reaches are zero) and uneven sizes; against torch."""
    rng = np.random.default_rng(sum(kernel) + sum(stride))
    x = rng.standard_normal((3, 4, 13, 11)).astype(np.float32)
    w = rng.standard_normal((5, 4, *kernel)).astype(np.float32)
    lx = luban.tensor(x, device="cpu", requires_grad=True)
    y = F.conv2d(lx, luban.tensor(w, device="cpu"), stride=stride, padding=padding)
    g = rng.standard_normal(tuple(y.shape)).astype(np.float32)
    (y * luban.tensor(g, device="cpu")).sum().backward()
    tx = torch.tensor(x, requires_grad=True)
    (torch.nn.functional.conv2d(tx, torch.tensor(w), stride=stride, padding=padding) * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(lx.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-4 * np.abs(tx.grad.numpy()).max())
