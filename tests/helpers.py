"""Shared helpers for luban's op tests.

References are always independent of luban: NumPy (forward values), central finite
differences in float64 (gradients) and PyTorch where it is installed (values, dtypes and
gradients). Nothing here compares luban against a result luban produced earlier, except
finite differences, which difference luban's *forward* to check its *backward*.
"""
from __future__ import annotations

import itertools
import zlib

import numpy as np

import luban

try:  # a test-only dependency: comparisons against it are skipped where it is missing
    import torch
except ImportError:  # pragma: no cover
    torch = None

# ---- randomness ---------------------------------------------------------------------------
def rng_for(*key) -> np.random.Generator:
    """A generator seeded by a stable hash of `key` (e.g. the test's parameters)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def random_shape(rng, ndim=None, min_ndim=1, max_ndim=3, max_size=4, p_one=0.3) -> tuple:
    """A small shape; each dim is 1 with probability p_one, else 2..max_size."""
    if ndim is None:
        ndim = int(rng.integers(min_ndim, max_ndim + 1))
    return tuple(1 if rng.random() < p_one else int(rng.integers(2, max_size + 1)) for _ in range(ndim))


def broadcast_shapes_pair(rng) -> tuple:
    """Two shapes that broadcast against each other: size-1 dims and different ranks."""
    out = random_shape(rng, min_ndim=2, max_ndim=3, p_one=0.0)
    a = tuple(1 if rng.random() < 0.35 else s for s in out)
    b = tuple(1 if rng.random() < 0.35 else s for s in out)
    if all(s == 1 for s in a):  # a always has a dim that can be expanded or strided
        a = a[:-1] + out[-1:]
    drop = int(rng.integers(0, len(out)))  # b may have fewer dims
    return a, b[drop:]


# ---- tensor conversion ---------------------------------------------------------------------
def lt(a, dtype=None, device=None, requires_grad=False) -> luban.Tensor:
    return luban.tensor(np.asarray(a), dtype=dtype, device=device, requires_grad=requires_grad)


def dtype_name(d) -> str:
    """'float32' for luban.float32, torch.float32 or np.float32."""
    if torch is not None and isinstance(d, torch.dtype):
        return str(d).replace("torch.", "")
    if isinstance(d, luban.DType):
        return d.name
    return np.dtype(d).name


def to_np(t) -> np.ndarray:
    if torch is not None and isinstance(t, torch.Tensor):
        t = t.detach()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.numpy()
    if isinstance(t, luban.Tensor):
        a = t.numpy()
        return a.astype(np.float32) if t.dtype is luban.bfloat16 else a
    return np.asarray(t)


def assert_close(got, expected, rtol=1e-5, atol=1e-6, what="value", check_dtype=False):
    """Shape-exact, nan-aware comparison. `got` is luban; `expected` numpy or torch."""
    g, e = to_np(got), to_np(expected)
    assert g.shape == e.shape, f"{what}: shape {g.shape} != expected {e.shape}"
    if check_dtype:
        assert dtype_name(got.dtype) == dtype_name(expected.dtype), \
            f"{what}: dtype {dtype_name(got.dtype)} != expected {dtype_name(expected.dtype)}"
    if g.dtype.kind in "biu" and e.dtype.kind in "biu":
        np.testing.assert_array_equal(g, e, err_msg=what)
    else:
        np.testing.assert_allclose(g.astype(np.float64), e.astype(np.float64), rtol=rtol, atol=atol,
                                   equal_nan=True, err_msg=what)


# ---- non-contiguous views ---------------------------------------------------------------------
VIEWS = ("contig", "permuted", "sliced", "expanded")


class View:
    """A way to obtain a tensor of `shape` as a view of a differently shaped base tensor.

    `apply` works on luban and torch tensors alike (same method names); `np_apply` is the
    NumPy equivalent used for forward references.
    """

    def __init__(self, kind: str, shape: tuple, rng):
        self.kind, self.shape = kind, tuple(shape)
        n = len(shape)
        if kind == "permuted" and n >= 2:
            perm = list(range(n))
            while perm == list(range(n)):
                perm = [int(i) for i in rng.permutation(n)]
            self.perm = tuple(perm)
            base = [0] * n
            for i, p in enumerate(perm):
                base[p] = shape[i]
            self.base_shape = tuple(base)
        elif kind == "sliced" and n >= 1:
            # x[1:1+s0] on the first dim (when ndim >= 2) and x[..., 1::2] on the last
            base = list(shape)
            base[-1] = 2 * shape[-1] + 1
            if n >= 2:
                base[0] = shape[0] + 2
            self.base_shape = tuple(base)
        elif kind == "expanded" and n >= 1:
            big = [i for i, s in enumerate(shape) if s > 1]
            pick = set(big[:: 2] if big else [])
            self.base_shape = tuple(1 if i in pick else s for i, s in enumerate(shape))
        else:
            self.kind, self.base_shape = "contig", self.shape

    def apply(self, t):
        if self.kind == "permuted":
            return t.permute(*self.perm)
        if self.kind == "sliced":
            n = self.shape[-1]
            if len(self.shape) >= 2:
                t = t.narrow(0, 1, self.shape[0])
            return t.narrow(-1, 1, 2 * n).unflatten(-1, (n, 2)).narrow(-1, 0, 1).squeeze(-1)
        if self.kind == "expanded":
            return t.expand(*self.shape)
        return t

    def np_apply(self, a):
        if self.kind == "permuted":
            return a.transpose(self.perm)
        if self.kind == "sliced":
            if len(self.shape) >= 2:
                a = a[1:1 + self.shape[0]]
            return a[..., 1::2][..., : self.shape[-1]]
        if self.kind == "expanded":
            return np.broadcast_to(a, self.shape)
        return a

    def __repr__(self):
        return f"View({self.kind}, {self.shape} from {self.base_shape})"


# ---- gradient checks ----------------------------------------------------------------------------
def _outputs(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def check_grad(fn, *np_inputs, device, atol=1e-6, rtol=1e-5, eps=1e-6, ref=None, max_coords=48, seed=0):
    """Check luban's backward of `fn` against central finite differences, in float64.

    fn maps float64 luban tensors (one per np input, all requiring grad) to a tensor or
    a tuple of tensors. A random cotangent is backpropagated (through `gradient=` for a
    single output). Finite differences evaluate `ref` (a NumPy implementation) when
    given, else luban's own forward on perturbed float64 inputs. At most `max_coords`
    randomly chosen coordinates per input are differenced. Returns the analytic grads.
    """
    rng = np.random.default_rng(seed)
    xs_np = [np.array(a, dtype=np.float64) for a in np_inputs]
    xs = [luban.tensor(a, dtype=luban.float64, device=device, requires_grad=True) for a in xs_np]
    outs = _outputs(fn(*xs))
    cots = [rng.standard_normal(tuple(o.shape)) for o in outs]
    for o in outs:
        assert o.dtype is luban.float64, f"float64 inputs gave a {o.dtype} output"
        assert o.requires_grad, "output of a differentiable function does not require grad"
    if len(outs) == 1:
        outs[0].backward(luban.tensor(cots[0], dtype=luban.float64, device=device))
    else:
        total = None
        for o, c in zip(outs, cots):
            term = (o * luban.tensor(c, dtype=luban.float64, device=device)).sum()
            total = term if total is None else total + term
        total.backward()

    def f(arrs):
        if ref is not None:
            res = ref(*arrs)
            res = _outputs(res)
        else:
            with luban.no_grad():
                res = [o.numpy() for o in _outputs(fn(*[luban.tensor(a, dtype=luban.float64, device=device)
                                                        for a in arrs]))]
        return sum(float(np.sum(np.asarray(r, dtype=np.float64) * c)) for r, c in zip(res, cots))

    grads = []
    for i, x in enumerate(xs_np):
        g = xs[i].grad
        assert g is not None, f"input {i}: .grad is None after backward"
        assert tuple(g.shape) == x.shape, f"input {i}: grad shape {tuple(g.shape)} != input shape {x.shape}"
        assert g.dtype is luban.float64, f"input {i}: grad dtype {g.dtype}"
        g = g.numpy()
        grads.append(g)
        coords = list(itertools.product(*[range(s) for s in x.shape]))
        if len(coords) > max_coords:
            coords = [coords[j] for j in rng.choice(len(coords), max_coords, replace=False)]
        for idx in coords:
            arrs_p = [a.copy() for a in xs_np]
            arrs_m = [a.copy() for a in xs_np]
            arrs_p[i][idx] += eps
            arrs_m[i][idx] -= eps
            num = (f(arrs_p) - f(arrs_m)) / (2 * eps)
            ana = float(g[idx])
            assert abs(ana - num) <= atol + rtol * abs(num), \
                f"input {i} at {idx}: analytic grad {ana!r} != finite difference {num!r}"
    return grads


def compare_torch(fn_luban, fn_torch, *np_inputs, dtype="float64", device=None, rtol=None, atol=None,
                  grad=True, seed=0, grad_rtol=None, grad_atol=None):
    """Run fn_luban and fn_torch on the same inputs; compare outputs (values, shapes, dtypes)
    and, for floating inputs when `grad`, the gradients of a random cotangent.

    Inputs are cast to `dtype` when they are floating point; others keep their dtype.
    Skips silently (returns None) where torch is not installed.
    """
    if torch is None:
        return None
    if rtol is None:
        rtol = 1e-10 if dtype == "float64" else 1e-5
    if atol is None:
        atol = 1e-12 if dtype == "float64" else 1e-6
    grad_rtol = rtol * 10 if grad_rtol is None else grad_rtol
    grad_atol = atol * 10 if grad_atol is None else grad_atol
    rng = np.random.default_rng(seed)
    arrs = []
    for a in np_inputs:
        a = np.asarray(a)
        arrs.append(a.astype(dtype) if a.dtype.kind == "f" else a)
    lx = [luban.tensor(a, device=device, requires_grad=grad and a.dtype.kind == "f") for a in arrs]
    tx = [torch.tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in arrs]
    lo, to = _outputs(fn_luban(*lx)), _outputs(fn_torch(*tx))
    assert len(lo) == len(to), f"{len(lo)} outputs, torch gives {len(to)}"
    for k, (l, t) in enumerate(zip(lo, to)):
        assert_close(l, t, rtol=rtol, atol=atol, what=f"output {k}", check_dtype=True)
    if not grad or not any(t.requires_grad for t in tx):
        return None
    diff = [(l, t) for l, t in zip(lo, to) if t.requires_grad]
    if not diff:
        return None
    cots = [rng.standard_normal(tuple(t.shape)) for _, t in diff]
    for (l, _), c in zip(diff, cots):
        assert l.requires_grad, "luban output does not require grad where torch's does"
    if len(diff) == 1:
        l, t = diff[0]
        l.backward(luban.tensor(cots[0], dtype=l.dtype, device=device))
        t.backward(torch.tensor(cots[0], dtype=t.dtype))
    else:
        ltot, ttot = None, None
        for (l, t), c in zip(diff, cots):
            a = (l * luban.tensor(c, dtype=l.dtype, device=device)).sum()
            b = (t * torch.tensor(c, dtype=t.dtype)).sum()
            ltot, ttot = (a, b) if ltot is None else (ltot + a, ttot + b)
        ltot.backward()
        ttot.backward()
    for k, (l, t) in enumerate(zip(lx, tx)):
        if not t.requires_grad:
            continue
        if t.grad is None:
            assert l.grad is None or not np.any(l.grad.numpy()), f"input {k}: torch grad is None, luban's is not 0"
            continue
        assert l.grad is not None, f"input {k}: luban .grad is None, torch's is not"
        assert_close(l.grad, t.grad, rtol=grad_rtol, atol=grad_atol, what=f"grad of input {k}", check_dtype=True)
    return [None if l.grad is None else l.grad.numpy() for l in lx]


def cpu_device_available() -> bool:
    try:
        luban.tensor([1.0], device="cpu").numpy()
        return True
    except Exception:  # noqa: BLE001  (not built yet, or no C compiler)
        return False


class Checks:
    """Run many independent checks, then fail once listing every one that failed.

        chk = Checks()
        chk("amax ties", compare_torch, fn, fn, a, device=device)
        chk.done()
    """

    def __init__(self):
        self.errors: list[str] = []

    def __call__(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AssertionError as e:
            self.errors.append(f"{what}: {' '.join(str(e).split())[:500]}")
        return None

    def done(self):
        assert not self.errors, f"{len(self.errors)} failed check(s):\n" + "\n".join(self.errors)
