"""Padding modes, sliding windows, convolution and pooling.

Convolution and pooling are a windowed view of the input (pad/reshape/expand/shrink/
permute only), one elementwise op and one reduce: a single fused reduce kernel with no
gather. Autograd of the composition gives the gradients (the adjoint of each view is
again a view, plus a sum where it expanded).
"""
from __future__ import annotations

import itertools
from typing import NamedTuple

from .. import dtypes
from ..autograd import Function
from ..tensor import Tensor, _norm_dim, arange, full, ones, prod, where
from .indexing import cat, stack
from .linalg import matmul


# ---- argument handling --------------------------------------------------------------
def _tuple(v, n: int, name: str, op: str, low: int = 1) -> tuple:
    """An int or a 1- or n-tuple as an n-tuple of ints >= low, as PyTorch expands them."""
    t = tuple(v) if isinstance(v, (tuple, list)) else (v,) * n
    if len(t) == 1:
        t = t * n
    if len(t) != n:
        raise RuntimeError(f"{op}: expected {name} to be a single integer or a tuple of {n} integers, got {v!r}")
    if any(int(i) < low for i in t):
        raise RuntimeError(f"{op}: {name} must be {'positive' if low else 'non-negative'}, got {v!r}")
    return tuple(int(i) for i in t)


def _batched(x: Tensor, nd: int, op: str) -> tuple[Tensor, bool]:
    """(C, *spatial) -> (1, C, *spatial): PyTorch accepts unbatched inputs too."""
    if x.ndim == nd + 2:
        return x, False
    if x.ndim == nd + 1:
        return x.unsqueeze(0), True
    raise RuntimeError(f"{op}: expected {nd + 1}-D (unbatched) or {nd + 2}-D (batched) input, "
                       f"got input of shape {tuple(x.shape)}")


def _spatial_arg(x: Tensor, pairs) -> tuple:
    """A full-rank ((before, after), ...) arg that touches only the trailing len(pairs) dims."""
    return ((0, 0),) * (x.ndim - len(pairs)) + tuple(pairs)


# ---- padding ------------------------------------------------------------------------
def pad(input: Tensor, pad, mode: str = "constant", value=None) -> Tensor:
    """torch.nn.functional.pad: `pad` lists (before, after) pairs from the last dim
    backwards; negative amounts crop."""
    arg = _pad_arg(input, pad)
    if mode == "constant":
        return _pad_nd(input, arg, 0 if value is None else value)
    if mode not in _EDGE_MODES:
        raise NotImplementedError(f"pad: unknown padding mode {mode!r}; expected 'constant', 'reflect', "
                                  f"'replicate' or 'circular'")
    if value:
        raise RuntimeError(f"pad: padding mode {mode!r} doesn't take in value argument")
    npairs = len(pad) // 2
    if npairs > 3 or input.ndim not in (npairs + 1, npairs + 2):
        raise NotImplementedError(f"pad: only 2D, 3D, 4D, 5D padding with non-constant padding are supported for "
                                  f"now; got mode {mode!r}, pad {tuple(pad)} and input of shape {tuple(input.shape)}")
    # negative amounts crop: PyTorch wraps (circular) what cropping leaves, but crops
    # the result of reflect and replicate
    crop_first = mode == "circular"
    out = _crop(input, arg) if crop_first else input
    for d, (before, after) in enumerate(arg):
        if before > 0 or after > 0:
            out = _EDGE_MODES[mode](out, d, max(before, 0), max(after, 0))
    return out if crop_first else _crop(out, arg)


def _pad_arg(x: Tensor, pad) -> tuple:
    pad = [int(p) for p in pad]
    if len(pad) % 2:
        raise RuntimeError(f"pad: padding length must be divisible by 2, got {tuple(pad)}")
    if len(pad) > 2 * x.ndim:
        raise RuntimeError(f"pad: padding length should be less than or equal to two times the input dimension "
                           f"but got padding length {len(pad)} and input of shape {tuple(x.shape)}")
    pairs = [(pad[i], pad[i + 1]) for i in range(0, len(pad), 2)][::-1]
    arg = _spatial_arg(x, pairs)
    for d, ((before, after), n) in enumerate(zip(arg, x.shape)):
        if n + before + after < 0:
            raise RuntimeError(f"pad: the input size {n}, plus negative padding {before} and {after} resulted in a "
                               f"negative output size; check dimension {d} of input of shape {tuple(x.shape)}")
    return arg


def _pad_nd(x: Tensor, arg: tuple, value=0) -> Tensor:
    """Constant padding with a full-rank arg; negative amounts crop."""
    grow = tuple((max(a, 0), max(b, 0)) for a, b in arg)
    out = x._pad_raw(grow)
    if value != 0:
        inside = ones(*x.shape, dtype=dtypes.bool_, device=x.device)._pad_raw(grow)
        out = where(inside, out, out._const(value))
    return _crop(out, arg)


def _crop(x: Tensor, arg: tuple) -> Tensor:
    """Apply the negative amounts of a padding arg (positive ones already applied)."""
    if all(a >= 0 and b >= 0 for a, b in arg):
        return x
    return x._shrink(tuple((max(-a, 0), n - max(-b, 0)) for (a, b), n in zip(arg, x.shape)))


def _with_len(x: Tensor, dim: int, n: int) -> tuple:
    shape = list(x.shape)
    shape[dim] = n
    return tuple(shape)


def _reflect(x: Tensor, d: int, before: int, after: int) -> Tensor:
    n = x.shape[d]
    if before >= n or after >= n:
        raise RuntimeError(f"pad: reflect padding ({before}, {after}) must be less than the input size {n} at "
                           f"dimension {d} of input of shape {tuple(x.shape)}")
    return _join([x.narrow(d, 1, before).flip(d), x, x.narrow(d, n - 1 - after, after).flip(d)], d)


def _replicate(x: Tensor, d: int, before: int, after: int) -> Tensor:
    n = x.shape[d]
    if n == 0:
        raise RuntimeError(f"pad: replicate padding needs a non-empty dimension {d}, got input of shape "
                           f"{tuple(x.shape)}")
    first = x.narrow(d, 0, 1).expand(_with_len(x, d, before))
    last = x.narrow(d, n - 1, 1).expand(_with_len(x, d, after))
    return _join([first, x, last], d)


def _circular(x: Tensor, d: int, before: int, after: int) -> Tensor:
    n = x.shape[d]
    if before > n or after > n:
        raise RuntimeError(f"pad: circular padding ({before}, {after}) wraps around more than once at dimension "
                           f"{d}, of size {n} (after cropping by any negative padding)")
    return _join([x.narrow(d, n - before, before), x, x.narrow(d, 0, after)], d)


def _join(parts: list, d: int) -> Tensor:
    return cat([p for p in parts if p.shape[d]], d)


_EDGE_MODES = {"reflect": _reflect, "replicate": _replicate, "circular": _circular}


# ---- sliding windows ------------------------------------------------------------------
def _fit_last(x: Tensor, size: int) -> Tensor:
    """Zero-pad or crop the last dim to `size`."""
    n = x.shape[-1]
    rest = tuple((0, s) for s in x.shape[:-1])
    if size >= n:
        return x._pad_raw(((0, 0),) * len(rest) + ((0, size - n),))
    return x._shrink(rest + ((0, size),))


def _out_size(n: int, k: int, s: int, d: int) -> int:
    return (n - d * (k - 1) - 1) // s + 1


def _windows_last(x: Tensor, k: int, s: int, d: int) -> Tensor:
    """(..., n) -> (..., o, k) with out[..., i, j] = x[..., i*s + j*d], as a view."""
    *pre, n = x.shape
    o = _out_size(n, k, s, d)
    if d == 1 and k <= s:  # disjoint windows: rows of s, keep the first k
        return _fit_last(_fit_last(x, o * s).reshape(*pre, o, s), k)
    # Lay k copies of x end to end and read them as rows of n + d: row j starts at x[j*d],
    # so column c of row j is x[c + j*d] (cells spilling into the next copy lie outside
    # every window). Every s-th column then gives the window starts.
    rows = x.unsqueeze(-2).expand(*pre, k, n).reshape(*pre, k * n)
    rows = _fit_last(rows, k * (n + d)).reshape(*pre, k, n + d)
    cols = _fit_last(rows, o * s).reshape(*pre, k, o, s)
    return _fit_last(cols, 1).reshape(*pre, k, o).transpose(-1, -2)


def _unwindows_last(w: Tensor, n: int, s: int, d: int) -> Tensor:
    """The adjoint of _windows_last: (..., o, k) -> (..., n), summing the taps that read
    the same element (col2im along one dim). Each view step is undone in reverse."""
    *pre, o, k = w.shape
    if d == 1 and k <= s:
        return _fit_last(_fit_last(w, s).reshape(*pre, o * s), n)
    cols = _fit_last(w.transpose(-1, -2).unsqueeze(-1), s).reshape(*pre, k, o * s)
    rows = _fit_last(cols, n + d).reshape(*pre, k * (n + d))
    return _fit_last(rows, k * n).reshape(*pre, k, n).sum(-2)


def _windows(x: Tensor, kernel: tuple, stride: tuple, dilation: tuple, op: str) -> Tensor:
    """(..., *spatial) -> (..., *out, *kernel): windows over the trailing len(kernel) dims."""
    nd = len(kernel)
    spatial = tuple(x.shape[-nd:])
    if any(_out_size(*a) < 1 for a in zip(spatial, kernel, stride, dilation)):
        raise RuntimeError(f"{op}: kernel size {kernel} with dilation {dilation} is larger than the (padded) input "
                           f"size {spatial}; input of shape {tuple(x.shape)}")
    first = x.ndim - nd
    for i, (k, s, d) in enumerate(zip(kernel, stride, dilation)):
        x = _windows_last(x.movedim(first + i, -1), k, s, d).movedim(-2, first + i)
    return x


def _unwindows(w: Tensor, spatial: tuple, stride: tuple, dilation: tuple) -> Tensor:
    """The adjoint of _windows: (..., *out, *kernel) -> (..., *spatial), overlaps summed."""
    nd = len(spatial)
    first = w.ndim - 2 * nd
    for i in reversed(range(nd)):
        w = _unwindows_last(w.movedim(first + i, -2), spatial[i], stride[i], dilation[i]).movedim(-1, first + i)
    return w


def unfold_dim(x: Tensor, dimension: int, size: int, step: int) -> Tensor:
    """Tensor.unfold: windows of `size` every `step` along `dimension`, as a new last dim."""
    d = _norm_dim(dimension, x.ndim, "unfold")
    n = x.shape[d]
    if size > n or size < 0:
        raise RuntimeError(f"unfold: maximum size for tensor at dimension {d} is {n} but size is {size}")
    if step <= 0:
        raise RuntimeError(f"unfold: step is {step} but must be > 0")
    return _windows_last(x.movedim(d, -1), size, step, 1).movedim(-2, d)


# ---- convolution ------------------------------------------------------------------------
def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    return _conv(input, weight, bias, stride, padding, dilation, groups, 1, "conv1d")


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    return _conv(input, weight, bias, stride, padding, dilation, groups, 2, "conv2d")


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    return _conv(input, weight, bias, stride, padding, dilation, groups, 3, "conv3d")


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1) -> Tensor:
    return _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, 1,
                           "conv_transpose1d")


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1) -> Tensor:
    return _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, 2,
                           "conv_transpose2d")


def _check_weight(x: Tensor, weight: Tensor, groups: int, nd: int, op: str, transposed: bool, shown: tuple) -> None:
    """conv weights are (out, in/groups, *kernel); transposed ones (in, out/groups, *kernel)."""
    if weight.ndim != nd + 2:
        raise RuntimeError(f"{op}: expected a {nd + 2}-D weight, got weight of shape {tuple(weight.shape)}")
    if groups < 1:
        raise RuntimeError(f"{op}: non-positive groups is not supported, got groups={groups}")
    if weight.shape[0] % groups:
        raise RuntimeError(f"{op}: weight of shape {tuple(weight.shape)} has {weight.shape[0]} "
                           f"{'in' if transposed else 'out'}_channels, not divisible by groups={groups}")
    channels = weight.shape[0] if transposed else weight.shape[1] * groups
    if x.shape[1] != channels:
        raise RuntimeError(f"{op}: expected input with {channels} channels (weight {tuple(weight.shape)}, "
                           f"groups={groups}), got input of shape {shown}")


def _add_bias(out: Tensor, bias, op: str) -> Tensor:
    if bias is None:
        return out
    if tuple(bias.shape) != (out.shape[1],):
        raise RuntimeError(f"{op}: expected bias of shape ({out.shape[1]},), got {tuple(bias.shape)}")
    return out + bias.reshape(-1, *[1] * (out.ndim - 2))


def _conv_padding(padding, kernel: tuple, stride: tuple, dilation: tuple, op: str) -> tuple:
    """(before, after) per spatial dim; 'same' puts the odd one after, like PyTorch."""
    nd = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nd
        if padding != "same":
            raise ValueError(f"{op}: invalid padding string {padding!r}, should be one of {{'valid', 'same'}}")
        if any(s != 1 for s in stride):
            raise RuntimeError(f"{op}: padding='same' is not supported for strided convolutions (stride={stride})")
        total = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in total)
    return tuple((p, p) for p in _tuple(padding, nd, "padding", op, low=0))


def _conv(input, weight, bias, stride, padding, dilation, groups, nd: int, op: str) -> Tensor:
    x, unbatched = _batched(input, nd, op)
    _check_weight(x, weight, groups, nd, op, False, tuple(input.shape))
    kernel = tuple(weight.shape[2:])
    stride, dilation = _tuple(stride, nd, "stride", op), _tuple(dilation, nd, "dilation", op)
    pads = _conv_padding(padding, kernel, stride, dilation, op)
    out = Tensor._apply(_Correlate, x, weight, pads=pads, stride=stride, dilation=dilation, groups=groups, op=op)
    out = _add_bias(out, bias, op)
    return out.squeeze(0) if unbatched else out


def _correlate(x: Tensor, weight: Tensor, stride: tuple, dilation: tuple, groups: int, op: str) -> Tensor:
    """(N, C, *spatial) x (O, C/groups, *kernel) -> (N, O, *out): one broadcast multiply
    and one sum over (channels of the group, *kernel), kept last so it runs innermost."""
    n, c = x.shape[:2]
    o, cg, *kernel = weight.shape
    nd = len(kernel)
    win = _windows(x, tuple(kernel), stride, dilation, op)  # (N, C, *out, *kernel)
    out_sp = tuple(win.shape[2:2 + nd])
    win = win.reshape(n, groups, 1, cg, *out_sp, *kernel)
    win = win.permute(0, 1, 2, *range(4, 4 + nd), 3, *range(4 + nd, 4 + 2 * nd))
    w = weight.reshape(1, groups, o // groups, *[1] * nd, cg, *kernel)
    return (win * w).sum(tuple(range(-nd - 1, 0))).reshape(n, o, *out_sp)


class _Correlate(Function):
    """conv's core: x zero-padded by `pads`, correlated with w; with its own backward
    rule. Composed, the input gradient would be the adjoint of the window view: each
    tap's contribution (a reduce over output channels, kernel-size times the input's
    size) summed into place, col2im style, which no GEMM describes. Instead it is a
    correlation like the forward one, which a device may claim as a GEMM over windows:
    the output gradient, padded by the kernel's reach, against the flipped, in/out-swapped
    weight (with stride > 1, one such correlation per phase of the input). The weight
    gradient is the composed one."""

    def forward(self, x, w, pads, stride, dilation, groups, op):
        x = Tensor._wrap(x)
        self.padded, self.spatial = x._pad_raw(_spatial_arg(x, pads)), tuple(x.shape[2:])
        self.w, self.cfg = w, (pads, stride, dilation, groups, op)
        return _correlate(self.padded, Tensor._wrap(w), stride, dilation, groups, op).lazydata

    def backward(self, g):
        pads, stride, dilation, groups, op = self.cfg
        w, g = Tensor._wrap(self.w), Tensor._wrap(g)
        dx = _correlate_input_grad(g, w, self.spatial, pads, stride, dilation, groups, op) \
            if self.needs_input_grad[0] else None
        dw = _correlate_weight_grad(self.padded, g, tuple(w.shape), stride, dilation, groups, op) \
            if self.needs_input_grad[1] else None
        return (None if dx is None else dx.lazydata), (None if dw is None else dw.lazydata)


def _correlate_input_grad(g: Tensor, w: Tensor, spatial: tuple, pads: tuple, stride: tuple, dilation: tuple,
                          groups: int, op: str) -> Tensor:
    """d(correlate)/dx for x of `spatial` size padded by `pads`: x[p] gets g[i] * w[k]
    wherever p + before = i*s + k*d. Only x's own cells are computed (not the padding's)."""
    if any(s > 1 for s in stride) and all(d == 1 for d in dilation):
        return _strided_input_grad(g, w, spatial, pads, stride, groups, op)
    nd = len(spatial)
    kernel = w.shape[2:]
    first = g.ndim - nd
    gpads, crops = [], []
    for i, (k, s, d, n, (before, after)) in enumerate(zip(kernel, stride, dilation, spatial, pads)):
        m = g.shape[first + i]
        if s > 1:  # dilate: s - 1 zeros between outputs, as a view (pad a new dim, merge)
            t = g.movedim(first + i, -1).unsqueeze(-1)
            t = t._pad_raw(((0, 0),) * (t.ndim - 1) + ((0, s - 1),)).reshape(*t.shape[:-2], m * s)
            g = _fit_last(t, (m - 1) * s + 1).movedim(-1, first + i)
        # pad by the kernel's reach, less x's own padding, and on the right up to x's size;
        # padding wider than the reach becomes a crop of the result
        lo, hi = d * (k - 1) - before, n + before - ((m - 1) * s + 1)
        gpads.append((max(lo, 0), max(hi, 0)))
        crops.append((max(-lo, 0), n + max(-lo, 0)))
    if any(s > 1 for s in stride):  # a dilated view has no strided address: copy it once
        g = g.contiguous()
    g = g._pad_raw(((0, 0),) * first + tuple(gpads))  # one PAD: a claimable zero-padded view
    wt = _swap_in_out(w, groups)
    dx = _correlate(g, wt.flip(*range(2, 2 + nd)), (1,) * nd, dilation, groups, op)
    if any(c != (0, n) for c, n in zip(crops, dx.shape[2:])):
        dx = dx._shrink(tuple((0, n) for n in dx.shape[:2]) + tuple(crops))
    return dx


def _swap_in_out(w: Tensor, groups: int) -> Tensor:
    """A conv weight (O, C/groups, *k) as the weight of its adjoint (C, O/groups, *k)."""
    o, cg, *kernel = w.shape
    return w.reshape(groups, o // groups, cg, *kernel).transpose(1, 2).reshape(groups * cg, o // groups, *kernel)


def _strided_input_grad(g: Tensor, w: Tensor, spatial: tuple, pads: tuple, stride: tuple, groups: int,
                        op: str) -> Tensor:
    """_correlate_input_grad for stride > 1 (dilation 1), by phases: the padded input's
    cells p = q*s + r of one residue r (per dim) get taps k = r, r + s, ... only, so each
    phase is a stride-1 correlation of g with that sub-kernel, and the phases interleave.
    Dilating g with zeros instead would multiply s^nd times as many products, 3/4 of them
    by zero for a 2-D stride 2."""
    nd, first = len(spatial), g.ndim - len(spatial)
    kernel = w.shape[2:]
    wt = _swap_in_out(w, groups)
    extent = [n + lo + hi for n, (lo, hi) in zip(spatial, pads)]  # the padded input's size
    q = [-(-f // s) for f, s in zip(extent, stride)]  # cells per phase
    lead = tuple(g.shape[:first - 1]) + (wt.shape[0],)
    phases = []
    for phase in itertools.product(*(range(s) for s in stride)):
        taps = [len(range(r, k, s)) for r, k, s in zip(phase, kernel, stride)]
        if 0 in taps:  # a stride wider than the kernel: cells no tap reaches
            phases.append(full((*lead, *q), 0.0, dtype=g.dtype, device=g.device))
            continue
        sub = wt[(slice(None), slice(None)) + tuple(slice(r, None, s) for r, s in zip(phase, stride))]
        gp = g._pad_raw(((0, 0),) * first + tuple((t - 1, n - m) for t, n, m in zip(taps, q, g.shape[first:])))
        phases.append(_correlate(gp, sub.flip(*range(2, 2 + nd)), (1,) * nd, (1,) * nd, groups, op))
    # (.., s1, s2, q1, q2) -> (.., q1, s1, q2, s2) -> (.., q1*s1, q2*s2), then x's own cells
    dx = stack(phases, first).reshape(*lead, *stride, *q)
    dx = dx.permute(*range(first), *(i for d in range(nd) for i in (first + nd + d, first + d)))
    dx = dx.reshape(*lead, *(n * s for n, s in zip(q, stride)))
    return dx._shrink(tuple((0, n) for n in lead) + tuple((lo, lo + n) for n, (lo, _) in zip(spatial, pads)))


def _correlate_weight_grad(x: Tensor, g: Tensor, shape: tuple, stride: tuple, dilation: tuple, groups: int,
                           op: str) -> Tensor:
    """d(correlate)/dw: the forward's window view times the output gradient, summed over
    the batch and output positions (what composing the forward's backward would give).
    The input is read channels-last, with the channels the last of the weight's dims in
    the sum: then a window's channels lie consecutive in memory and a GEMM reads them in
    place, where NCHW windows had each input element transposed once per kernel tap
    while packed (W2's weight gradients: 136-158 GFLOP/s against 196-207 forward)."""
    o, cg, *kernel = shape
    nd = len(kernel)
    last = x.permute(0, *range(2, 2 + nd), 1).contiguous()  # (N, *spatial, C)
    win = _windows(last.permute(0, nd + 1, *range(1, nd + 1)), tuple(kernel), stride, dilation, op)
    n, out_sp = x.shape[0], tuple(win.shape[2:2 + nd])
    win = win.reshape(n, groups, 1, cg, *out_sp, *kernel)
    win = win.permute(0, 1, 2, *range(4, 4 + 2 * nd), 3)  # (N, G, 1, *out, *kernel, C/G)
    prod = win * g.reshape(n, groups, o // groups, *out_sp, *[1] * (nd + 1))
    dw = prod.sum((0, *range(3, 3 + nd)), keepdim=True).reshape(groups, o // groups, *kernel, cg)
    return dw.permute(0, 1, nd + 2, *range(2, 2 + nd)).reshape(shape)


def _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, nd: int,
                    op: str) -> Tensor:
    """The adjoint of conv: per input pixel, each tap's contribution (a multiply and a sum
    over the group's input channels), then _unwindows adds the taps into place. No zeros
    are inserted and no gather is needed."""
    x, unbatched = _batched(input, nd, op)
    _check_weight(x, weight, groups, nd, op, True, tuple(input.shape))
    stride, dilation = _tuple(stride, nd, "stride", op), _tuple(dilation, nd, "dilation", op)
    padding = _tuple(padding, nd, "padding", op, low=0)
    extra = _tuple(output_padding, nd, "output_padding", op, low=0)
    if any(e >= max(s, d) for e, s, d in zip(extra, stride, dilation)):
        raise RuntimeError(f"{op}: output padding must be smaller than either stride or dilation, but got "
                           f"output_padding={extra}, stride={stride}, dilation={dilation}")
    n, c, *in_sp = x.shape
    _, og, *kernel = weight.shape
    cols = (x.reshape(n, groups, c // groups, 1, *in_sp, *[1] * nd)
            * weight.reshape(1, groups, c // groups, og, *[1] * nd, *kernel)).sum(2)
    cols = cols.reshape(n, groups * og, *in_sp, *kernel)
    full = tuple((i - 1) * s + d * (k - 1) + 1 for i, s, d, k in zip(in_sp, stride, dilation, kernel))
    out = _unwindows(cols, full, stride, dilation)
    # padding removes cells from both ends; output_padding takes some back on the right
    out = _pad_nd(out, _spatial_arg(out, [(-p, e - p) for p, e in zip(padding, extra)]))
    out = _add_bias(out, bias, op)
    return out.squeeze(0) if unbatched else out


# ---- pooling ----------------------------------------------------------------------------
class _Pool(NamedTuple):
    kernel: tuple
    stride: tuple
    dilation: tuple
    padding: tuple  # as given
    pads: tuple  # (before, after) per dim; `after` also covers the extra cells of ceil_mode


def _pool_geometry(spatial: tuple, kernel_size, stride, padding, dilation, ceil_mode: bool, op: str) -> _Pool:
    nd = len(spatial)
    k = _tuple(kernel_size, nd, "kernel_size", op)
    s = k if stride in (None, (), []) else _tuple(stride, nd, "stride", op)  # PyTorch: no stride = kernel
    p = _tuple(padding, nd, "padding", op, low=0)
    d = _tuple(dilation, nd, "dilation", op)
    if any(pi > ki // 2 for pi, ki in zip(p, k)):
        raise RuntimeError(f"{op}: pad should be at most half of kernel size, but got padding={p} and "
                           f"kernel_size={k}")
    pads = []
    for n, ki, si, pi, di in zip(spatial, k, s, p, d):
        span = n + 2 * pi - di * (ki - 1) - 1
        o = (span + (si - 1 if ceil_mode else 0)) // si + 1
        if ceil_mode and (o - 1) * si >= n + pi:  # the last window must start inside the input
            o -= 1
        if o < 1:
            raise RuntimeError(f"{op}: output size is too small: kernel_size={k}, dilation={d}, padding={p} for "
                               f"input spatial size {spatial}")
        pads.append((pi, max(pi, (o - 1) * si + di * (ki - 1) + 1 - n - pi)))
    return _Pool(k, s, d, p, tuple(pads))


def _pool_input(input: Tensor, nd: int, op: str) -> tuple[Tensor, bool]:
    x, unbatched = _batched(input, nd, op)
    if x.numel() == 0:
        raise RuntimeError(f"{op}: expected a non-empty input, got input of shape {tuple(input.shape)}")
    return x, unbatched


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 1, "max_pool1d")


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 2, "max_pool2d")


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 3, "max_pool3d")


def _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, nd: int, op: str):
    x, unbatched = _pool_input(input, nd, op)
    spatial = tuple(x.shape[2:])
    g = _pool_geometry(spatial, kernel_size, stride, padding, dilation, ceil_mode, op)

    def windows(t: Tensor) -> Tensor:
        return _windows(t._pad_raw(_spatial_arg(t, g.pads)), g.kernel, g.stride, g.dilation, op)

    # pad with zeros, then mask after windowing: the fill stays out of the broadcast view
    inside = windows(ones(*spatial, dtype=dtypes.bool_, device=x.device))
    win = where(inside, windows(x), dtypes.min_value(x.dtype))
    taps = tuple(range(-nd, 0))
    out = win.amax(taps)
    if return_indices:
        # flat input positions grow along a window, so the first maximal tap is the
        # smallest position among the maximal ones
        positions = windows(arange(prod(spatial), device=x.device).reshape(spatial))
        hit = inside.logical_and((win == out.reshape(*out.shape, *[1] * nd)).logical_or(win.isnan()))
        idx = where(hit, positions, prod(spatial)).amin(taps)
        return (out.squeeze(0), idx.squeeze(0)) if unbatched else (out, idx)
    return out.squeeze(0) if unbatched else out


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, None, 1, "avg_pool1d")


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 2,
                     "avg_pool2d")


def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 3,
                     "avg_pool3d")


def _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, nd: int,
              op: str) -> Tensor:
    x, unbatched = _pool_input(input, nd, op)
    if not x.dtype.is_float:
        raise RuntimeError(f"{op}: expected a floating point input, got {x.dtype}")
    g = _pool_geometry(tuple(x.shape[2:]), kernel_size, stride, padding, 1, ceil_mode, op)
    taps = tuple(range(-nd, 0))
    total = _windows(x._pad_raw(_spatial_arg(x, g.pads)), g.kernel, g.stride, g.dilation, op).sum(taps)
    out = total / (divisor_override or _avg_divisor(x, g, count_include_pad, op))
    return out.squeeze(0) if unbatched else out


def _avg_divisor(x: Tensor, g: _Pool, count_include_pad: bool, op: str):
    """The cells each window counts: those of the input, and of its padding if included,
    but never the extra cells of ceil_mode."""
    spatial = tuple(x.shape[2:])
    if count_include_pad and all(after == p for (_, after), p in zip(g.pads, g.padding)):
        return prod(g.kernel)  # no ceil_mode cells: every window counts all its taps
    if count_include_pad:
        cells = tuple(n + 2 * p for n, p in zip(spatial, g.padding))
        grow = tuple((0, after - p) for (_, after), p in zip(g.pads, g.padding))
    else:
        cells, grow = spatial, g.pads
    counted = ones(*cells, dtype=x.dtype, device=x.device)._pad_raw(grow)
    return _windows(counted, g.kernel, g.stride, g.dilation, op).sum(tuple(range(-len(spatial), 0)))


def adaptive_avg_pool1d(input, output_size) -> Tensor:
    return _adaptive_avg_pool(input, output_size, 1, "adaptive_avg_pool1d")


def adaptive_avg_pool2d(input, output_size) -> Tensor:
    return _adaptive_avg_pool(input, output_size, 2, "adaptive_avg_pool2d")


def _adaptive_avg_pool(input, output_size, nd: int, op: str) -> Tensor:
    x, unbatched = _pool_input(input, nd, op)
    sizes = (output_size,) * nd if isinstance(output_size, int) or output_size is None else tuple(output_size)
    if len(sizes) == 1:
        sizes = sizes * nd
    if len(sizes) != nd:
        raise RuntimeError(f"{op}: output_size must be an int or a tuple of {nd} values, got {output_size!r}")
    for i, o in enumerate(sizes):
        n = x.shape[2 + i]
        o = n if o is None else int(o)
        if o < 1:
            raise RuntimeError(f"{op}: output_size must be positive, got {output_size!r}")
        x = _adaptive_mean(x, 2 + i, o)
    return x.squeeze(0) if unbatched else x


def _adaptive_mean(x: Tensor, dim: int, o: int) -> Tensor:
    """Average `dim` into o bins, bin i = [floor(i*n/o), ceil((i+1)*n/o)) as in PyTorch.
    Unequal bins are not one strided window, so they average through an (o, n) weight
    matrix (a mean is separable, so this runs one dim at a time)."""
    n = x.shape[dim]
    if n % o == 0:
        return x.unflatten(dim, (o, n // o)).mean(dim + 1)
    i = arange(o, device=x.device).reshape(o, 1)
    col = arange(n, device=x.device).reshape(1, n)
    start, end = (i * n) // o, ((i + 1) * n + o - 1) // o
    inside = (col >= start).logical_and(col < end)
    weights = where(inside, (end - start).cast(x.dtype).reciprocal(), 0.0).cast(x.dtype)
    return matmul(x.movedim(dim, -1), weights.T).movedim(-1, dim)


# ---- im2col / col2im ---------------------------------------------------------------------
def unfold(input, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """torch.nn.functional.unfold (im2col): (N, C, H, W) -> (N, C*kh*kw, L)."""
    x, unbatched = _batched(input, 2, "unfold")
    k = _tuple(kernel_size, 2, "kernel_size", "unfold")
    d, s = _tuple(dilation, 2, "dilation", "unfold"), _tuple(stride, 2, "stride", "unfold")
    p = _tuple(padding, 2, "padding", "unfold", low=0)
    win = _windows(x._pad_raw(_spatial_arg(x, [(pi, pi) for pi in p])), k, s, d, "unfold")
    n, c, oh, ow = win.shape[:4]
    out = win.permute(0, 1, 4, 5, 2, 3).reshape(n, c * k[0] * k[1], oh * ow)
    return out.squeeze(0) if unbatched else out


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """torch.nn.functional.fold (col2im): the adjoint of unfold, overlapping taps summed."""
    x, unbatched = _batched(input, 1, "fold")
    size = _tuple(output_size, 2, "output_size", "fold")
    k = _tuple(kernel_size, 2, "kernel_size", "fold")
    d, s = _tuple(dilation, 2, "dilation", "fold"), _tuple(stride, 2, "stride", "fold")
    p = _tuple(padding, 2, "padding", "fold", low=0)
    padded = tuple(n + 2 * pi for n, pi in zip(size, p))
    blocks = tuple(_out_size(*a) for a in zip(padded, k, s, d))
    n, ck, length = x.shape
    if ck % (k[0] * k[1]):
        raise RuntimeError(f"fold: expected size of input's dimension 1 to be divisible by the product of "
                           f"kernel_size {k}, but got input of shape {tuple(input.shape)}")
    if min(blocks) < 1 or length != blocks[0] * blocks[1]:
        raise RuntimeError(f"fold: expected input's dimension 2 to match the calculated number of sliding blocks "
                           f"{blocks[0]} * {blocks[1]} = {blocks[0] * blocks[1]}, but got input of shape "
                           f"{tuple(input.shape)}")
    cols = x.reshape(n, ck // (k[0] * k[1]), *k, *blocks).permute(0, 1, 4, 5, 2, 3)
    out = _unwindows(cols, padded, s, d)
    out = _crop(out, _spatial_arg(out, [(-pi, -pi) for pi in p]))
    return out.squeeze(0) if unbatched else out
