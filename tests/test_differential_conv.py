"""Random convolutions and poolings, forward and backward, on every device against
PyTorch: 1-d and 2-d, stride, padding, dilation and groups drawn together, odd spatial
sizes, channels-last inputs. A convolution is a windowed view times the weight
(frontend/windows.py) with its own backward rule (one correlation per stride phase), and
on the cpu device its GEMMs are claimed with windows read in place; the combinations
drawn here reach the phase and padding edge cases that fixed tests name one by one."""
import numpy as np
import pytest

import luban

torch = pytest.importorskip("torch")

CASES = 40


def _draw(rng):
    nd = int(rng.integers(1, 3))
    groups = int(rng.choice([1, 1, 2, 3]))
    big = rng.random() < 0.5  # enough work for the cpu device to claim its GEMMs
    per = (4, 17) if big else (1, 4)
    cin, cout = groups * int(rng.integers(*per)), groups * int(rng.integers(*per))
    k = tuple(int(rng.integers(1, 4)) for _ in range(nd))
    stride = tuple(int(rng.integers(1, 4)) for _ in range(nd))
    dil = tuple(int(rng.integers(1, 3)) for _ in range(nd))
    pad = tuple(int(rng.integers(0, 3)) for _ in range(nd))
    # spatial sizes large enough for one window
    size = tuple(int(rng.integers((kk - 1) * d + 1, (kk - 1) * d + (20 if big else 12))) for kk, d in zip(k, dil))
    batch = int(rng.integers(1, 4))
    return nd, groups, cin, cout, k, stride, dil, pad, size, batch


@pytest.mark.parametrize("seed", range(CASES))
def test_random_convolution_matches_torch(device, seed):
    rng = np.random.default_rng(90_000 + seed)
    nd, groups, cin, cout, k, stride, dil, pad, size, batch = _draw(rng)
    x = rng.standard_normal((batch, cin) + size).astype(np.float32)
    w = rng.standard_normal((cout, cin // groups) + k).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    last = nd == 2 and rng.random() < 0.3  # the input stored channels-last, read through a permute
    pool = str(rng.choice(["none", "max", "avg"]))

    def run(lib, F, xv, wv, bv):
        conv = F.conv1d if nd == 1 else F.conv2d
        if last:
            xv = xv.permute(0, 3, 1, 2)
        y = conv(xv, wv, bv, stride=stride, padding=pad, dilation=dil, groups=groups)
        if pool != "none" and min(y.shape[2:]) >= 2:
            fn = {("max", 1): F.max_pool1d, ("max", 2): F.max_pool2d, ("avg", 1): F.avg_pool1d,
                  ("avg", 2): F.avg_pool2d}[(pool, nd)]
            y = fn(y.relu() if pool == "max" else y, 2)
        return y

    xs = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if last else x
    tx, tw, tb = (torch.from_numpy(v).double().requires_grad_() for v in (xs, w, b))
    ty = run(torch, torch.nn.functional, tx, tw, tb)
    g = np.random.default_rng(seed).standard_normal(tuple(ty.shape))
    (ty * torch.from_numpy(g)).sum().backward()

    lx, lw, lb = (luban.tensor(v, requires_grad=True) for v in (xs, w, b))
    ly = run(luban, luban.nn.functional, lx, lw, lb)
    assert tuple(ly.shape) == tuple(ty.shape)
    (ly * luban.tensor(g.astype(np.float32))).sum().backward()

    msg = (f"seed {seed}: x {xs.shape}{' channels-last' if last else ''}, w {w.shape}, stride {stride}, "
           f"padding {pad}, dilation {dil}, groups {groups}, pool {pool}")
    tol = dict(rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(ly.numpy(), ty.detach().numpy(), err_msg=msg, **tol)
    for name, lt, tt in (("x", lx, tx), ("weight", lw, tw), ("bias", lb, tb)):
        np.testing.assert_allclose(lt.grad.numpy(), tt.grad.numpy(), err_msg=f"{msg} ({name} grad)", **tol)
