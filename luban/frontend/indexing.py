"""Indexing: `x[key]`, `x[key] = v`, gather/scatter, cat/stack, with PyTorch semantics.

Basic keys (ints, slices, None, ...) are views built from shrink, pad and reshape.
Advanced keys (integer tensors, lists, masks) become ONE gather: the indexed dims are
moved together and merged into one axis, which a single linear index selects along.
Writes are functional: the new value is built with where/pad masks or scatter_add,
then rebound with Tensor._inplace.
"""
from __future__ import annotations

import math

import numpy as np

from .. import autograd as F
from .. import dtypes
from ..tensor import Scalar, Tensor, _norm_dim, arange, broadcast_shape, full, where


# ---- parsing a key ------------------------------------------------------------------
class _Mask:
    """A boolean index. Its True count decides the result's shape, so it is read on the host."""

    def __init__(self, arr: np.ndarray):
        self.arr = arr


class _Plan:
    """What a key does to x.

    box: per dim of x, (start, length, step); an int is (i, 1, 1) and its dim is dropped.
    shape: the basic view (slices applied, ints dropped, None dims added).
    adv: (position in that view, int64 index tensor, range-checked already) per advanced index.
    """

    def __init__(self, x: Tensor, key):
        items = [_item(k) for k in (key if isinstance(key, tuple) else (key,))]
        if sum(k is Ellipsis for k in items) > 1:
            raise IndexError("an index can only have a single ellipsis ('...')")
        used = sum(_dims_used(k) for k in items)
        if used > x.ndim:
            raise IndexError(f"too many indices for tensor of dimension {x.ndim}")
        fill = [slice(None)] * (x.ndim - used)
        at = next((i for i, k in enumerate(items) if k is Ellipsis), len(items))
        items[at:at + 1] = fill
        self.box, self.shape, self.adv = [], [], []
        for k in items:
            self._add(x, k)
        self.shape = tuple(self.shape)

    def _add(self, x: Tensor, k) -> None:
        d = len(self.box)
        if k is None or isinstance(k, bool):
            self.shape.append(1)
            if isinstance(k, bool):  # NumPy: True/False index a new size-1 dim with [0] / []
                self._index(Tensor(np.zeros(int(k), np.int64), device=x.device), True)
        elif isinstance(k, int):
            n = x.shape[d]
            if not -n <= k < n:
                raise IndexError(f"index {k} is out of bounds for dimension {d} with size {n}")
            self.box.append((k % n, 1, 1))
        elif isinstance(k, slice):
            start, stop, step = k.indices(x.shape[d])
            if step <= 0:
                raise ValueError("step must be greater than zero")
            m = len(range(start, stop, step))
            self.box.append((start, m, step))
            self.shape.append(m)
        elif isinstance(k, _Mask):
            want = tuple(x.shape[d:d + k.arr.ndim])
            if k.arr.shape != want:
                raise IndexError(f"The shape of the mask {list(k.arr.shape)} at index {d} does not match the shape "
                                 f"of the indexed tensor {list(x.shape)} at index {d}")
            for i, where_true in enumerate(np.nonzero(k.arr)):
                self._whole(x.shape[d + i])
                self._index(Tensor(where_true.astype(np.int64), device=x.device), True)
        else:
            self._whole(x.shape[d])
            self._index(*_index(k, x.shape[d], d, x.device, wrap=True))

    def _whole(self, n: int) -> None:
        self.box.append((0, n, 1))
        self.shape.append(n)

    def _index(self, idx: Tensor, checked: bool) -> None:
        self.adv.append((len(self.shape) - 1, idx, checked))


def _item(k):
    """One key element as None, Ellipsis, slice, bool, int, _Mask, np int array or Tensor."""
    if k is None or k is Ellipsis or isinstance(k, slice):
        return k
    if isinstance(k, (bool, np.bool_)):
        return bool(k)
    if isinstance(k, (int, np.integer)):
        return int(k)
    if isinstance(k, Tensor):
        if k.dtype.is_float:
            raise IndexError(f"tensors used as indices must be long, int, byte or bool tensors, got {k.dtype}")
        if k.ndim == 0:  # like PyTorch, a 0-d index acts as a Python scalar (read on the host)
            return k.item()
        # PyTorch still treats uint8 index tensors as masks
        return _Mask(k.numpy().astype(bool)) if k.dtype in (dtypes.bool_, dtypes.uint8) else k
    arr = np.asarray(k)
    if arr.dtype == np.bool_:
        return bool(arr) if arr.ndim == 0 else _Mask(arr)
    if arr.size == 0:
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise IndexError(f"only integers, slices, None, Ellipsis, bools and integer or boolean arrays/tensors are "
                         f"valid indices, got {type(k).__name__} of dtype {arr.dtype}")
    return int(arr) if arr.ndim == 0 else arr.astype(np.int64)


def _dims_used(k) -> int:
    if k is None or k is Ellipsis or isinstance(k, bool):
        return 0
    return k.arr.ndim if isinstance(k, _Mask) else 1


def _index(idx, n: int, dim: int, device: str, wrap: bool) -> tuple:
    """(int64 index on `device`, checked). A host-known index is range-checked here, for a
    message naming the dim; a lazy one is left to GATHER/SCATTER_ADD, which raise
    IndexError when they run. wrap: negative indices count from the end (getitem)."""
    if isinstance(idx, Tensor) and not idx.lazydata.realized:
        idx = idx.to(device).long()
        return (where(idx < 0, idx + n, idx) if wrap else idx), False
    host = idx.numpy() if isinstance(idx, Tensor) else idx
    bad = (host < (-n if wrap else 0)) | (host >= n)
    if bad.any():
        raise IndexError(f"index {host[bad].flat[0]} is out of bounds for dimension {dim} with size {n}")
    if wrap and (host < 0).any():
        return Tensor(np.where(host < 0, host + n, host), dtype=dtypes.int64, device=device), True
    if isinstance(idx, Tensor):
        return idx.to(device).long(), True
    return Tensor(host, dtype=dtypes.int64, device=device), True


# ---- the basic part: a view of x, and its inverse (x-shaped, zero outside) -------------
def _extents(box, shape) -> list:
    """How much of each dim of x the box spans (a strided slice ends at its last element)."""
    return [min(m * step, n - start) for (start, m, step), n in zip(box, shape)]


def _view(x: Tensor, plan: _Plan) -> Tensor:
    box = plan.box
    x = _shrink(x, [(start, start + k) for (start, _, _), k in zip(box, _extents(box, x.shape))])
    if any(step > 1 for _, _, step in box):  # pad each strided dim to m*step, split it to (m, step), keep step 0
        x = _pad(x, [(0, m * step - k) for (_, m, step), k in zip(box, x.shape)])
        x = x.reshape(_split(box, lambda m, step: (m, step)))
        x = _shrink(x, [(0, s) for s in _split(box, lambda m, step: (m, 1))])
    return x.reshape(plan.shape)


def _unview(t: Tensor, plan: _Plan, shape: tuple) -> Tensor:
    """Place a tensor of the view's shape back where the view came from; zeros elsewhere."""
    box, ext = plan.box, _extents(plan.box, shape)
    t = t.reshape(_split(box, lambda m, step: (m, 1)))
    if any(step > 1 for _, _, step in box):
        t = _pad(t, [(0, n - c) for n, c in zip(_split(box, lambda m, step: (m, step)), t.shape)])
        t = _shrink(t.reshape([m * step for _, m, step in box]), [(0, k) for k in ext])
    return _pad(t, [(start, n - start - k) for (start, _, _), n, k in zip(box, shape, ext)])


def _split(box, parts) -> list:
    """The shape with each strided dim split in two by parts(m, step)."""
    out = []
    for _, m, step in box:
        out += parts(m, step) if step > 1 else (m,)
    return out


def _shrink(t: Tensor, arg) -> Tensor:
    arg = tuple(arg)
    return t if all(a == (0, n) for a, n in zip(arg, t.shape)) else t._shrink(arg)


def _pad(t: Tensor, arg) -> Tensor:
    arg = tuple(arg)
    return t if all(a == (0, 0) for a in arg) else t._pad_raw(arg)


# ---- the advanced part: one gather / scatter along a merged axis --------------------------
class _Layout:
    """Where advanced indices put their result (in place when adjacent, else first, as in
    PyTorch/NumPy) and the merged view that lets ONE gather or scatter serve them all: the
    indexed dims are moved together and flattened into axis `axis`, indexed by `lin`."""

    def __init__(self, shape: tuple, adv: list):
        pos = [p for p, _, _ in adv]
        self.axis = pos[0] if pos == list(range(pos[0], pos[0] + len(pos))) else 0
        rest = [d for d in range(len(shape)) if d not in pos]
        self.order = rest[:self.axis] + pos + rest[self.axis:]
        pre, post = tuple(shape[d] for d in rest[:self.axis]), tuple(shape[d] for d in rest[self.axis:])
        sizes = tuple(shape[p] for p in pos)
        self.split = pre + sizes + post
        self.merged = pre + (math.prod(sizes),) + post
        self.lin = _linear(adv, sizes)
        self.out = pre + tuple(self.lin.shape) + post
        self.flat_out = pre + (self.lin.numel(),) + post
        self.index = self.along_axis(self.lin.reshape(-1), self.flat_out)

    def along_axis(self, t: Tensor, shape: tuple) -> Tensor:
        """A 1-D tensor laid along the merged axis, expanded to `shape`."""
        return t.reshape([t.shape[0] if d == self.axis else 1 for d in range(len(shape))]).expand(shape)

    def merge(self, y: Tensor) -> Tensor:
        return y.permute(self.order).reshape(self.merged)

    def unmerge(self, t: Tensor) -> Tensor:
        return t.reshape(self.split).permute([self.order.index(d) for d in range(len(self.order))])


def _linear(adv: list, sizes: tuple) -> Tensor:
    """Row-major position in the merged axis, broadcast over the index shapes."""
    try:
        shape = broadcast_shape(*(i.shape for _, i, _ in adv), op="index")
    except RuntimeError:
        raise IndexError("shape mismatch: indexing tensors could not be broadcast together with shapes "
                         + ", ".join(str(list(i.shape)) for _, i, _ in adv)) from None
    lin, bad = None, None
    for k, ((_, idx, checked), n) in enumerate(zip(adv, sizes)):
        stride = math.prod(sizes[k + 1:])
        term = idx * stride if stride != 1 else idx
        lin = term if lin is None else lin + term
        if not checked and len(adv) > 1:
            # out of range here could still land inside the merged axis: send it to -1 so GATHER raises
            miss = (idx < 0).logical_or(idx >= n)
            bad = miss if bad is None else bad.logical_or(miss)
    lin = lin.expand(shape)
    return lin if bad is None else where(bad, -1, lin)


def getitem(x: Tensor, key) -> Tensor:
    plan = _Plan(x, key)
    y = _view(x, plan)
    if not plan.adv:
        return y
    lay = _Layout(plan.shape, plan.adv)
    return Tensor._apply(F.Gather, lay.merge(y), lay.index, axis=lay.axis).reshape(lay.out)


# ---- writes ---------------------------------------------------------------------------
def setitem(x: Tensor, key, value) -> None:
    old = x._snapshot()
    result = _masked_write(old, key, value)
    if result is None:
        result = _write(old, _Plan(x, key), value)
    x._inplace(result)


def _write(old: Tensor, plan: _Plan, value) -> Tensor:
    if not plan.adv:
        v = _fit(value, old, plan.shape)
        hit = _unview(full(plan.shape, True, device=old.device), plan, tuple(old.shape))
        return where(hit, _unview(v, plan, tuple(old.shape)), old)
    lay = _Layout(plan.shape, plan.adv)
    v = _fit(value, old, lay.out).reshape(lay.flat_out)
    work = _work_dtype(old.dtype)
    total = Tensor._apply(F.ScatterAdd, full(lay.merged, 0, dtype=work, device=old.device), lay.index, v.cast(work),
                          axis=lay.axis)
    ones = full((lay.lin.numel(),), 1, dtype=dtypes.int32, device=old.device)
    hits = Tensor._apply(F.ScatterAdd, full((lay.merged[lay.axis],), 0, dtype=dtypes.int32, device=old.device),
                         lay.lin.reshape(-1), ones, axis=0)
    shape = tuple(old.shape)
    total = _unview(lay.unmerge(total), plan, shape)
    hits = _unview(lay.unmerge(lay.along_axis(hits, lay.merged)), plan, shape)
    return _overwrite(old, total, hits)


def _work_dtype(dt):
    return dtypes.int32 if dt.is_bool else dt  # bools are summed as counts


def _overwrite(old: Tensor, total: Tensor, hits: Tensor) -> Tensor:
    """old where nothing was written, else the mean of what was written there. Duplicate
    indices have no defined winner in PyTorch; with only SCATTER_ADD a mean is what one
    pass can give, and it is exact when the duplicates agree (the usual case)."""
    count = hits.maximum(1)
    mean = total / count if total.dtype.is_float else total.div(count, rounding_mode="trunc")
    return where(hits > 0, mean.cast(old.dtype), old)


def _masked_write(old: Tensor, key, value) -> Tensor | None:
    """x[mask] = v without reading the mask on the host, when v's shape does not depend on how
    many elements the mask selects (it broadcasts against the dims after the mask)."""
    if not (isinstance(key, Tensor) and key.dtype.is_bool and 0 < key.ndim <= old.ndim
            and key.shape == old.shape[:key.ndim]):
        return None
    rest = tuple(old.shape[key.ndim:])
    v = _drop_leading_ones(_value(value, old), len(rest))
    if v.ndim > len(rest):
        return None
    v = _fit(v, old, rest).reshape((1,) * key.ndim + rest)
    return where(key.to(old.device).reshape(tuple(key.shape) + (1,) * len(rest)), v, old)


def _value(value, x: Tensor) -> Tensor:
    if isinstance(value, Tensor):
        return value.cast(x.dtype)
    if isinstance(value, Scalar):
        return x._const(value, shape=())
    return Tensor(value, device=x.device).cast(x.dtype)


def _drop_leading_ones(v: Tensor, ndim: int) -> Tensor:
    """PyTorch lets a written value carry extra leading size-1 dims."""
    while v.ndim > ndim and v.shape[0] == 1:
        v = v.reshape(v.shape[1:])
    return v


def _fit(value, x: Tensor, shape: tuple) -> Tensor:
    """value as x's dtype, broadcast to `shape`."""
    v = _drop_leading_ones(_value(value, x), len(shape))
    try:
        return v.expand(shape)
    except RuntimeError:
        raise RuntimeError(f"setitem: value of shape {tuple(v.shape)} cannot be broadcast to the indexed "
                           f"shape {tuple(shape)}") from None


# ---- dim-wise gather / scatter ----------------------------------------------------------
def _dim_index(x: Tensor, d: int, index, op: str) -> Tensor:
    """Check a torch.gather-style index (same ndim as x, no larger off dim `d`)."""
    if not isinstance(index, Tensor) or not index.dtype.is_int:
        raise RuntimeError(f"{op}(): expected an integer index tensor, got "
                           f"{index.dtype if isinstance(index, Tensor) else type(index).__name__}")
    if index.ndim != x.ndim:
        raise RuntimeError(f"{op}(): index of shape {tuple(index.shape)} must have as many dimensions as the input "
                           f"of shape {tuple(x.shape)}")
    for k, (i, n) in enumerate(zip(index.shape, x.shape)):
        if k != d and i > n:
            raise RuntimeError(f"{op}(): index of shape {tuple(index.shape)} is larger than the input of shape "
                               f"{tuple(x.shape)} at dimension {k} (only dimension {d} may be larger)")
    return _index(index, x.shape[d], d, x.device, wrap=False)[0]


def _fill_out(x: Tensor, d: int, idx: Tensor, *vals: Tensor) -> list:
    """Pad idx and vals with zeros up to x's shape off dim d: SCATTER_ADD's index must match
    its base there (its backward gathers with it), and adding zeros at index 0 is harmless."""
    arg = [(0, 0) if k == d else (0, n - i) for k, (i, n) in enumerate(zip(idx.shape, x.shape))]
    return [_pad(t, arg) for t in (idx, *vals)]


def _src(src, x: Tensor, idx: Tensor, op: str) -> Tensor:
    """The part of src that idx covers, in x's dtype (a scalar fills idx's shape)."""
    if not isinstance(src, Tensor):
        return full(tuple(idx.shape), src, dtype=x.dtype, device=x.device)
    if src.ndim != idx.ndim or any(i > s for i, s in zip(idx.shape, src.shape)):
        raise RuntimeError(f"{op}(): index of shape {tuple(idx.shape)} must be no larger than src of shape "
                           f"{tuple(src.shape)} in every dimension")
    return _shrink(src, [(0, i) for i in idx.shape]).cast(x.dtype)


def gather(x: Tensor, dim: int, index: Tensor) -> Tensor:
    d = _norm_dim(dim, x.ndim, "gather")
    idx = _dim_index(x, d, index, "gather")
    table = _shrink(x, [(0, n) if k == d else (0, i) for k, (i, n) in enumerate(zip(idx.shape, x.shape))])
    return Tensor._apply(F.Gather, table, idx, axis=d)


def scatter_add(x: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:
    d = _norm_dim(dim, x.ndim, "scatter_add")
    idx = _dim_index(x, d, index, "scatter_add")
    idx, src = _fill_out(x, d, idx, _src(src, x, idx, "scatter_add"))
    return Tensor._apply(F.ScatterAdd, x, idx, src, axis=d)


def scatter(x: Tensor, dim: int, index: Tensor, src) -> Tensor:
    """torch.scatter: src (a tensor or a scalar) written at index along dim."""
    d = _norm_dim(dim, x.ndim, "scatter")
    idx = _dim_index(x, d, index, "scatter")
    work = _work_dtype(x.dtype)
    ones = full(tuple(idx.shape), 1, dtype=dtypes.int32, device=x.device)
    idx, src, ones = _fill_out(x, d, idx, _src(src, x, idx, "scatter").cast(work), ones)
    total = Tensor._apply(F.ScatterAdd, full(tuple(x.shape), 0, dtype=work, device=x.device), idx, src, axis=d)
    hits = Tensor._apply(F.ScatterAdd, full(tuple(x.shape), 0, dtype=dtypes.int32, device=x.device), idx, ones,
                         axis=d)
    return _overwrite(x, total, hits)


def take_along_dim(x: Tensor, indices: Tensor, dim: int | None = None) -> Tensor:
    if dim is None:
        return gather(x.reshape(-1), 0, indices.reshape(-1))
    if indices.ndim != x.ndim:
        raise RuntimeError(f"take_along_dim(): input and indices should have the same number of dimensions, but got "
                           f"{x.ndim} dimensions for input, and {indices.ndim} dimensions for indices")
    d = _norm_dim(dim, x.ndim, "take_along_dim")
    off = broadcast_shape(*([1 if k == d else n for k, n in enumerate(t.shape)] for t in (x, indices)),
                          op="take_along_dim")  # both broadcast except along dim
    return gather(x.expand(_with(off, d, x.shape[d])), d, indices.expand(_with(off, d, indices.shape[d])))


def _with(shape: tuple, d: int, n: int) -> tuple:
    return tuple(n if k == d else s for k, s in enumerate(shape))


def index_select(x: Tensor, dim: int, index: Tensor) -> Tensor:
    d = _norm_dim(dim, x.ndim, "index_select")
    if not isinstance(index, Tensor) or not index.dtype.is_int or index.ndim > 1:
        raise IndexError("index_select(): index must be a 0-d or 1-d integer tensor")
    idx = _index(index, x.shape[d], d, x.device, wrap=False)[0].reshape(-1)
    shape = [len(idx) if k == d else n for k, n in enumerate(x.shape)]
    idx = idx.reshape([len(idx) if k == d else 1 for k in range(x.ndim)]).expand(shape)
    return Tensor._apply(F.Gather, x, idx, axis=d)


def masked_fill(x: Tensor, mask: Tensor, value) -> Tensor:
    if not isinstance(mask, Tensor) or not mask.dtype.is_bool:
        raise RuntimeError(f"masked_fill only supports boolean masks, but got "
                           f"{mask.dtype if isinstance(mask, Tensor) else type(mask).__name__}")
    if isinstance(value, Tensor) and value.ndim:
        raise RuntimeError(f"masked_fill only supports a 0-dimensional value tensor, but got tensor with "
                           f"{value.ndim} dimension(s)")
    return where(mask.to(x.device), _value(value, x), x)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """torch.nn.functional.one_hot (int64). Like PyTorch, it reads the classes on the host
    to check their range (and to infer num_classes=-1)."""
    if not tensor.dtype.is_int:
        raise RuntimeError(f"one_hot is only applicable to index tensor, got {tensor.dtype}")
    classes = tensor.numpy()
    if num_classes == -1:
        if not classes.size:
            raise RuntimeError("Can not infer total number of classes from empty tensor.")
        num_classes = int(classes.max()) + 1
    if classes.size and classes.min() < 0:
        raise RuntimeError("Class values must be non-negative.")
    if classes.size and classes.max() >= num_classes:
        raise RuntimeError("Class values must be smaller than num_classes.")
    return (tensor.unsqueeze(-1) == arange(num_classes, device=tensor.device)).long()


# ---- host-side, data-dependent shapes ------------------------------------------------------
def nonzero(x: Tensor, as_tuple: bool = False):
    """Indices of the non-zero elements; their count is the shape, so x is read on the host."""
    a = x.numpy()
    if as_tuple:
        return tuple(Tensor(i, dtype=dtypes.int64, device=x.device) for i in np.nonzero(np.atleast_1d(a)))
    return Tensor(np.argwhere(a), dtype=dtypes.int64, device=x.device)


def masked_select(x: Tensor, mask: Tensor) -> Tensor:
    if not isinstance(mask, Tensor) or not mask.dtype.is_bool:
        raise RuntimeError("masked_select: expected a boolean mask tensor")
    shape = broadcast_shape(x.shape, mask.shape, op="masked_select")
    return getitem(x.expand(shape), mask.expand(shape))


# ---- joining -------------------------------------------------------------------------------
def cat(tensors, dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("cat(): expected a non-empty list of Tensors")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"cat(): expected a sequence of Tensors, got {type(t).__name__} at position {i}")
        if t.ndim == 0:
            raise RuntimeError(f"cat(): zero-dimensional tensor (at position {i}) cannot be concatenated")
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = dtypes.promote(dtype, t.dtype)
    # like PyTorch, a 1-D empty tensor is skipped whatever the other shapes are
    parts = [(i, t) for i, t in enumerate(tensors) if tuple(t.shape) != (0,)] or [(0, tensors[0])]
    first = parts[0][1]
    d = _norm_dim(dim, first.ndim, "cat")
    for i, t in parts[1:]:
        _check_cat(first, t, d, i)
    out = _join([t.cast(dtype) for _, t in parts], d)
    return out.clone() if len(parts) == 1 else out  # a new tensor, as PyTorch returns


def _check_cat(first: Tensor, t: Tensor, d: int, i: int) -> None:
    if t.device != first.device:
        raise RuntimeError(f"cat(): expected all tensors to be on the same device, but found {first.device} and "
                           f"{t.device} (tensor {i} in the list)")
    if t.ndim != first.ndim or any(a != b for k, (a, b) in enumerate(zip(first.shape, t.shape)) if k != d):
        raise RuntimeError(f"cat(): sizes of tensors must match except in dimension {d}, but got shapes "
                           f"{tuple(first.shape)} and {tuple(t.shape)} (tensor {i} in the list)")


def _join(parts: list, d: int) -> Tensor:
    """Pad each part to the full length along d and add. Balanced, so a fused kernel checks
    O(log n) pad bounds per element (PAD evaluates its source only where it is in range)."""
    if len(parts) == 1:
        return parts[0]
    a, b = _join(parts[:len(parts) // 2], d), _join(parts[len(parts) // 2:], d)
    na, nb = a.shape[d], b.shape[d]
    a = _pad(a, [(0, nb) if k == d else (0, 0) for k in range(a.ndim)])
    b = _pad(b, [(na, 0) if k == d else (0, 0) for k in range(b.ndim)])
    return Tensor._apply(F.Add, a, b)


def stack(tensors, dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack(): expected a non-empty list of Tensors")
    for i, t in enumerate(tensors[1:], 1):
        if tuple(t.shape) != tuple(tensors[0].shape):
            raise RuntimeError(f"stack(): expects each tensor to be equal size, but got {tuple(tensors[0].shape)} at "
                               f"entry 0 and {tuple(t.shape)} at entry {i}")
    d = _norm_dim(dim, tensors[0].ndim + 1, "stack")
    return cat([t.unsqueeze(d) for t in tensors], d)
