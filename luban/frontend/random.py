"""Counter-based random numbers: the same seed gives the same bits on every device.

Bits are an integer hash of (element index + a running offset) keyed by the seed, built
from primitive uint32 ops (xor, shift, multiply wrap the same everywhere). Seed and
offset enter kernels as a small buffer, not as constants, so a training loop that draws
new numbers each step reuses one compiled kernel.
"""
from __future__ import annotations

import math

import numpy as np

from .. import dtypes
from ..graph.lazy import LazyBuffer
from ..runtime import canonical_device, default_device
from ..schedule import from_numpy
from ..tensor import Tensor, _shape_arg

_state = {"seed": 0, "offset": 0}


def manual_seed(seed: int) -> None:
    """Reset the generator: later draws are a pure function of `seed`."""
    _state["seed"] = int(seed) & 0xFFFFFFFF
    _state["offset"] = 0


def initial_seed() -> int:
    return _state["seed"]


def get_rng_state() -> np.ndarray:
    return np.array([_state["seed"], _state["offset"]], dtype=np.int64)


def set_rng_state(state) -> None:
    state = np.asarray(state, dtype=np.int64).reshape(-1)
    _state["seed"], _state["offset"] = int(state[0]), int(state[1])


def _hash(x):
    """lowbias32: a fast integer hash with good avalanche (on Tensors or uint32 arrays)."""
    x = x ^ (x >> 16)
    x = x * 0x7FEB352D
    x = x ^ (x >> 15)
    x = x * 0x846CA68B
    return x ^ (x >> 16)


def _seed_key(seed: int) -> tuple:
    """(mixed seed, its hash) as uint32 arrays of shape (1,). The golden-ratio offset
    matters: lowbias32(0) == 0 would make seed 0's first draw exactly 0."""
    mixed = np.array([seed], dtype=np.uint32) + np.uint32(0x9E3779B9)
    return mixed, _hash(mixed)


def _mix(ctr, seed, seed_hash):
    """The counter hash both streams share (on Tensors or on uint32 arrays)."""
    return _hash(_hash(ctr ^ seed_hash) + seed)


def host_bits(seed: int, offset: int, n: int) -> np.ndarray:
    """The bits random_bits would draw from state (seed, offset), made with NumPy: for
    host-side shuffling (DataLoader) that must match the device stream."""
    mixed, hashed = _seed_key(seed)
    ctr = (np.arange(n, dtype=np.uint64) + offset).astype(np.uint32)  # wraps like the device
    return _mix(ctr, mixed, hashed)


def random_bits(n: int, device: str) -> Tensor:
    """n uint32 words; advances the generator's offset by n."""
    mixed, hashed = _seed_key(_state["seed"])
    key = np.concatenate([mixed, hashed, np.array([_state["offset"]], dtype=np.uint64).astype(np.uint32)])
    _state["offset"] += n
    k = Tensor._wrap(from_numpy(key, dtypes.uint32, device))
    seed, seed_hash, offset = (k.narrow(0, i, 1).expand(n) for i in range(3))
    ctr = Tensor._wrap(LazyBuffer.iota(n, dtypes.uint32, device)) + offset
    return _mix(ctr, seed, seed_hash)


def _uniform01(shape: tuple, dtype, device: str) -> Tensor:
    n = math.prod(shape)
    bits = random_bits(n, device)
    # as many random bits as the dtype's mantissa holds, so rounding never reaches 1.0
    p = _MANTISSA_BITS.get(dtype.name, 24)
    u = (bits >> (32 - p)).cast(dtypes.float32) * (1.0 / (1 << p))
    return u.cast(dtype).reshape(shape)


_MANTISSA_BITS = {"float16": 11, "bfloat16": 8}


def _args(size, dtype, device):
    dtype = dtypes.get_dtype(dtype) if dtype is not None else dtypes.default_float
    device = default_device() if device is None else canonical_device(device)
    return _shape_arg(size), dtype, device


def rand(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    shape, dtype, device = _args(size, dtype, device)
    out = _uniform01(shape, dtype, device)
    return out.requires_grad_() if requires_grad else out


def randn(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Standard normal by Box-Muller on two uniform draws."""
    shape, dtype, device = _args(size, dtype, device)
    u1 = _uniform01(shape, dtypes.float32, device)
    u2 = _uniform01(shape, dtypes.float32, device)
    z = (-2.0 * (1.0 - u1).log()).sqrt() * (2 * math.pi * u2).cos()
    out = z.cast(dtype)
    return out.requires_grad_() if requires_grad else out


def randint(low, high=None, size=None, dtype=None, device=None) -> Tensor:
    if isinstance(high, (tuple, list)):  # torch's randint(high, size)
        low, high, size = 0, low, high
    if high is None:
        low, high = 0, low
    if size is None:
        raise TypeError("randint() missing required argument 'size'")
    if high <= low:
        raise RuntimeError(f"randint: expected low < high, got low={low}, high={high}")
    shape = _shape_arg(size if isinstance(size, (tuple, list)) else (size,))
    dtype = dtypes.get_dtype(dtype) if dtype is not None else dtypes.int64
    device = default_device() if device is None else canonical_device(device)
    bits = random_bits(math.prod(shape), device).cast(dtypes.float64)
    v = (bits * ((high - low) / 4294967296.0)).floor() + low
    return v.cast(dtype).reshape(shape)


def rand_like(t: Tensor, dtype=None, device=None) -> Tensor:
    return rand(*t.shape, dtype=t.dtype if dtype is None else dtype, device=device or t.device)


def randn_like(t: Tensor, dtype=None, device=None) -> Tensor:
    return randn(*t.shape, dtype=t.dtype if dtype is None else dtype, device=device or t.device)


def randint_like(t: Tensor, low, high=None, dtype=None, device=None) -> Tensor:
    return randint(low, high, tuple(t.shape), dtype=t.dtype if dtype is None else dtype, device=device or t.device)


def randperm(n: int, dtype=None, device=None) -> Tensor:
    """A permutation of 0..n-1 drawn from the luban generator (sorted on the host)."""
    keys = host_bits(_state["seed"], _state["offset"], n)
    _state["offset"] += n
    return Tensor(np.argsort(keys, kind="stable"), dtype=dtypes.int64 if dtype is None else dtype, device=device)


def bernoulli(p: Tensor) -> Tensor:
    return (rand(*p.shape, dtype=p.dtype, device=p.device) < p).cast(p.dtype)
