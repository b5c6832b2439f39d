"""Padding, sliding windows, convolution, pooling and einsum against PyTorch: values and
the gradients of a random-weighted sum of the outputs, on every device."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import luban
from luban import debug
from luban.frontend import linalg
from luban.frontend import windows as LF

pytestmark = [pytest.mark.usefixtures("device"),  # tests/conftest.py: once per device
              pytest.mark.filterwarnings("ignore:Using padding='same'")]  # torch's note on even kernels


def _np(t) -> np.ndarray:
    return t.detach().numpy() if isinstance(t, torch.Tensor) else t.numpy()


def _close(got, want, what: str) -> None:
    g, w = _np(got), _np(want)
    assert g.shape == w.shape, f"{what}: shape {g.shape} != torch's {w.shape}"
    if w.dtype.kind in "iub":
        np.testing.assert_array_equal(g, w, err_msg=what)
    else:
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4, err_msg=what)


def _check(fn, *shapes, ops=(LF, TF), seed=0):
    """fn(F, *tensors) with F luban's and then PyTorch's functional module: outputs agree,
    and so do the gradients of a random-weighted sum of the float outputs."""
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    lx = [luban.tensor(a, requires_grad=True) for a in arrays]
    tx = [torch.tensor(a, requires_grad=True) for a in arrays]
    lo, to = fn(ops[0], *lx), fn(ops[1], *tx)
    lo, to = (lo, to) if isinstance(to, tuple) else ((lo,), (to,))
    loss_l, loss_t = 0, 0
    for k, (a, b) in enumerate(zip(lo, to)):
        _close(a, b, f"output {k}")
        if b.dtype.is_floating_point:
            w = rng.standard_normal(tuple(b.shape)).astype(np.float32)
            loss_l, loss_t = loss_l + (a * luban.tensor(w)).sum(), loss_t + (b * torch.tensor(w)).sum()
    loss_l.backward()
    loss_t.backward()
    for k, (a, b) in enumerate(zip(lx, tx)):
        _close(a.grad, b.grad if b.grad is not None else torch.zeros_like(b), f"grad of input {k}")


# ---- convolution ------------------------------------------------------------------------
# (input shape, weight shape, stride, padding, dilation, groups)
CONV2D = [
    ((1, 3, 7, 7), (4, 3, 3, 3), 1, 0, 1, 1),
    ((3, 4, 8, 9), (6, 2, 3, 2), 2, 1, 1, 2),
    ((2, 4, 9, 8), (4, 1, 2, 3), (1, 2), (1, 0), (2, 1), 4),  # depthwise
    ((1, 2, 6, 7), (3, 2, 3, 3), 1, "same", 2, 1),
    ((2, 3, 7, 6), (2, 3, 4, 2), 1, "same", 1, 1),  # even kernel: the odd pad goes after
    ((1, 3, 8, 8), (2, 3, 3, 3), 3, 2, 1, 1),  # stride == kernel: disjoint windows
    ((2, 2, 9, 10), (2, 2, 2, 1), (4, 3), 0, 1, 1),  # stride > kernel
    ((1, 2, 5, 5), (2, 2, 3, 3), 1, "valid", 1, 1),
    ((3, 5, 5), (2, 3, 2, 2), 1, 1, 1, 1),  # unbatched input
    ((2, 3, 6, 6), (4, 3, 3, 3), 1, 3, 1, 1),  # padding wider than the kernel's reach
    ((1, 2, 7, 7), (2, 2, 1, 1), 2, 2, 1, 1),  # ... on both sides, strided
]


@pytest.mark.parametrize("x,w,stride,padding,dilation,groups", CONV2D)
def test_conv2d(x, w, stride, padding, dilation, groups):
    _check(lambda F, x, w, b: F.conv2d(x, w, b, stride, padding, dilation, groups), x, w, (w[0],))


@pytest.mark.parametrize("view", ["permuted", "sliced"])
def test_conv2d_noncontiguous(view):
    if view == "permuted":  # NHWC storage, a transposed weight
        _check(lambda F, x, w: F.conv2d(x.permute(0, 3, 1, 2), w.transpose(2, 3), padding=1), (2, 6, 5, 3),
               (4, 3, 2, 3))
    else:
        _check(lambda F, x, w: F.conv2d(x.narrow(1, 1, 3).narrow(3, 2, 5), w, stride=2), (2, 5, 7, 9),
               (4, 3, 3, 2))


@pytest.mark.parametrize("x,w,stride,padding,dilation,groups", [
    ((2, 4, 11), (6, 2, 3), 2, 1, 2, 2),
    ((1, 3, 8), (2, 3, 4), 1, "same", 1, 1),
    ((3, 9), (4, 3, 2), 3, 0, 1, 1),  # unbatched
])
def test_conv1d(x, w, stride, padding, dilation, groups):
    _check(lambda F, x, w, b: F.conv1d(x, w, b, stride, padding, dilation, groups), x, w, (w[0],))


def test_conv3d():
    _check(lambda F, x, w: F.conv3d(x, w, None, (1, 2, 1), 1, (1, 1, 2), 2), (1, 4, 4, 5, 5), (2, 2, 2, 3, 2))


# (input shape, weight shape, stride, padding, output_padding, groups, dilation)
@pytest.mark.parametrize("x,w,stride,padding,output_padding,groups,dilation", [
    ((1, 3, 5, 4), (3, 2, 3, 3), 1, 0, 0, 1, 1),
    ((3, 4, 4, 5), (4, 3, 3, 2), 2, 1, 1, 2, 1),
    ((2, 2, 3, 4), (2, 3, 3, 3), (3, 2), (2, 0), (1, 0), 1, 2),
    ((1, 2, 4, 4), (2, 1, 2, 2), 2, 0, 0, 1, 1),  # stride == kernel: disjoint taps
    ((2, 4, 4), (2, 2, 3, 3), 2, 1, 0, 1, 1),  # unbatched
])
def test_conv_transpose2d(x, w, stride, padding, output_padding, groups, dilation):
    bias = (w[1] * groups,)
    _check(lambda F, x, w, b: F.conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation),
           x, w, bias)


def test_conv_transpose1d():
    _check(lambda F, x, w: F.conv_transpose1d(x, w, None, 3, 2, 1, 2, 2), (2, 4, 6), (4, 1, 3))


def test_conv_is_one_kernel():
    """The windowed view fuses: a convolution or a pooling of realized inputs is one
    reduce kernel, with no gather."""
    x = luban.tensor(np.ones((2, 3, 8, 8), np.float32)).realize()
    w = luban.tensor(np.ones((4, 3, 3, 3), np.float32)).realize()
    for fn in (lambda: LF.conv2d(x, w, padding=1, stride=2, dilation=2), lambda: LF.max_pool2d(x, 3, 2, 1),
               lambda: LF.avg_pool2d(x, 2), lambda: LF.conv_transpose2d(x, w.transpose(0, 1), stride=2)):
        debug.reset_kernel_count()
        fn().realize()
        assert debug.kernel_count() == 1


def test_conv_errors():
    x, w = luban.zeros(1, 4, 8, 8), luban.zeros(8, 3, 3, 3)
    with pytest.raises(RuntimeError, match=r"conv2d: expected input with 3 channels \(weight \(8, 3, 3, 3\), "
                                           r"groups=1\), got input of shape \(1, 4, 8, 8\)"):
        LF.conv2d(x, w)
    with pytest.raises(RuntimeError, match="conv2d: expected 3-D .* or 4-D"):
        LF.conv2d(luban.zeros(8, 8), w)
    with pytest.raises(RuntimeError, match="not divisible by groups=3"):
        LF.conv2d(luban.zeros(1, 6, 8, 8), luban.zeros(8, 2, 3, 3), groups=3)
    with pytest.raises(RuntimeError, match="not supported for strided"):
        LF.conv2d(luban.zeros(1, 3, 8, 8), w, stride=2, padding="same")
    with pytest.raises(RuntimeError, match="larger than the"):
        LF.conv2d(luban.zeros(1, 3, 2, 8), w)
    with pytest.raises(RuntimeError, match="bias of shape"):
        LF.conv2d(luban.zeros(1, 3, 8, 8), w, luban.zeros(3))
    with pytest.raises(RuntimeError, match="output padding must be smaller"):
        LF.conv_transpose2d(luban.zeros(1, 8, 4, 4), w, stride=2, output_padding=2)


# ---- pooling ----------------------------------------------------------------------------
# (input shape, kernel_size, stride, padding, dilation, ceil_mode)
MAX_POOL2D = [
    ((1, 2, 6, 6), 2, None, 0, 1, False),
    ((3, 2, 7, 8), 3, 2, 1, 1, False),
    ((2, 3, 8, 7), 3, 2, 1, 2, True),
    ((1, 2, 9, 6), (2, 3), (1, 2), (1, 1), 1, True),
    ((2, 7, 7), 3, 3, 1, 1, True),  # unbatched; ceil_mode adds a partial window
]


@pytest.mark.parametrize("x,kernel,stride,padding,dilation,ceil_mode", MAX_POOL2D)
def test_max_pool2d(x, kernel, stride, padding, dilation, ceil_mode):
    _check(lambda F, x: F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode, return_indices=True), x)


def test_max_pool2d_noncontiguous():
    _check(lambda F, x: F.max_pool2d(x.transpose(2, 3).narrow(2, 1, 6), 2, 1), (2, 3, 5, 8))


def test_max_pool1d():
    _check(lambda F, x: F.max_pool1d(x, 3, 2, 1, 1, True, return_indices=True), (2, 3, 10))
    _check(lambda F, x: F.max_pool1d(x, 2, dilation=3), (3, 9))


@pytest.mark.parametrize("x,kernel,stride,padding,ceil_mode,count_include_pad,divisor", [
    ((1, 2, 6, 6), 2, None, 0, False, True, None),
    ((3, 2, 7, 8), 3, 2, 1, False, False, None),
    ((2, 3, 8, 7), 3, 2, 1, True, True, None),  # ceil_mode cells never count
    ((1, 2, 9, 6), (2, 3), (1, 2), (1, 1), True, False, None),
    ((2, 7, 7), 3, 2, 1, False, True, 5),  # unbatched, divisor_override
])
def test_avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad, divisor):
    _check(lambda F, x: F.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad, divisor), x)


def test_avg_pool1d():
    _check(lambda F, x: F.avg_pool1d(x, 3, 2, 1, True, False), (2, 3, 10))


@pytest.mark.parametrize("x,size", [((2, 3, 8, 6), (4, 3)), ((1, 2, 7, 5), (3, 2)), ((2, 5, 7), (None, 3)),
                                    ((1, 2, 3, 5), 4), ((1, 2, 6, 6), 1)])
def test_adaptive_avg_pool2d(x, size):
    _check(lambda F, x: F.adaptive_avg_pool2d(x, size), x)


def test_adaptive_avg_pool1d():
    _check(lambda F, x: F.adaptive_avg_pool1d(x, 4), (2, 3, 10))


def test_pool_errors():
    with pytest.raises(RuntimeError, match="pad should be at most half of kernel size"):
        LF.max_pool2d(luban.zeros(1, 1, 6, 6), 2, padding=2)
    with pytest.raises(RuntimeError, match="max_pool2d: expected 3-D"):
        LF.max_pool2d(luban.zeros(6, 6), 2)


# ---- im2col, Tensor.unfold, pad -------------------------------------------------------------
@pytest.mark.parametrize("kernel,dilation,padding,stride", [(2, 1, 0, 1), ((2, 3), 2, 1, 2), (3, 1, 1, 3)])
def test_unfold_fold(kernel, dilation, padding, stride):
    _check(lambda F, x: F.unfold(x, kernel, dilation, padding, stride), (2, 3, 7, 8))
    _check(lambda F, x: F.fold(F.unfold(x, kernel, dilation, padding, stride), (7, 8), kernel, dilation, padding,
                               stride), (2, 3, 7, 8))


def test_tensor_unfold():
    _check(lambda F, x: x.unfold(1, 3, 2), (2, 8, 3))
    _check(lambda F, x: x.unfold(-1, 2, 3).unfold(0, 2, 1), (3, 8))


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("x,pad", [((2, 3, 6), (2, 3)), ((2, 3, 5, 6), (1, 2, 3, 0)),
                                   ((2, 3, 5, 6), (2, -1, -2, 3)), ((3, 5, 6), (-1, 3, 2, 2))])
def test_pad(mode, x, pad):
    _check(lambda F, x: F.pad(x, pad, mode), x)


def test_pad_value():
    _check(lambda F, x: F.pad(x.transpose(0, 2), (1, 2, 0, 1), value=3.5), (4, 3, 2))
    _check(lambda F, x: F.pad(x, (1, 1, 0, 2, 2, 0), value=-1.0), (2, 3, 2))
    got = LF.pad(luban.tensor([[1, 2]]), (1, 0, 0, 1), value=7)
    assert got.dtype is luban.int64 and got.tolist() == [[7, 1, 2], [7, 7, 7]]


def test_pad_errors():
    x = luban.zeros(1, 2, 3)
    with pytest.raises(RuntimeError, match="divisible by 2"):
        LF.pad(x, (1,))
    with pytest.raises(RuntimeError, match="must be less than the input size 3"):
        LF.pad(x, (3, 0), "reflect")
    with pytest.raises(RuntimeError, match="wraps around more than once"):
        LF.pad(x, (4, 0), "circular")
    with pytest.raises(NotImplementedError, match="non-constant padding"):
        LF.pad(luban.zeros(3), (1, 1), "reflect")
    with pytest.raises(NotImplementedError, match="unknown padding mode"):
        LF.pad(x, (1, 1), "mirror")


# ---- einsum -----------------------------------------------------------------------------------
EINSUM = [
    ("ij,jk->ik", (3, 4), (4, 5)), ("ij,jk", (3, 4), (4, 5)), ("bij,bjk->bik", (2, 3, 4), (2, 4, 5)),
    ("ii->i", (4, 4)), ("ii", (4, 4)), ("i,j->ij", (3,), (4,)), ("...ij,...jk->...ik", (2, 3, 3, 4), (3, 4, 2)),
    ("ij->ji", (3, 4)), ("ji", (3, 4)), ("ij->", (3, 4)), ("ij->j", (3, 4)), ("ij,jk,kl->il", (2, 3), (3, 4), (4, 5)),
    ("iij->ji", (3, 3, 2)), ("i,i", (5,), (5,)), ("...ij->...ji", (2, 3, 4)), ("a...,a...->...", (3, 2), (3, 1)),
    ("bhqd,bhkd->bhqk", (2, 2, 3, 4), (2, 2, 5, 4)), ("i...i", (3, 2, 3)), ("ij,ij->ij", (3, 1), (3, 4)),
]


@pytest.mark.parametrize("equation,shapes", [(e[0], e[1:]) for e in EINSUM], ids=[e[0] for e in EINSUM])
def test_einsum(equation, shapes):
    _check(lambda F, *ops: F.einsum(equation, *ops), *shapes, ops=(linalg, torch))


def test_einsum_list_and_errors():
    a, b = luban.ones(2, 3), luban.ones(3, 4)
    assert linalg.einsum("ij,jk->ik", [a, b]).tolist() == [[3.0] * 4] * 2
    with pytest.raises(RuntimeError, match="subscript j has size 2 for operand 1"):
        linalg.einsum("ij,jk", a, luban.ones(2, 2))
    with pytest.raises(RuntimeError, match="output subscript k does not appear"):
        linalg.einsum("ij->k", a)
    with pytest.raises(RuntimeError, match="no ellipsis was given"):
        linalg.einsum("ijk", a)
    with pytest.raises(RuntimeError, match="repeated for operand 0"):
        linalg.einsum("ii", a)
