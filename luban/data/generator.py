"""Random streams for data loading, computed on the host.

The bits are exactly those of luban's device generator (same counter hash, same
(seed, offset) state), but made with NumPy: shuffling never launches a kernel, so it
is cheap, device-independent and safe inside DataLoader worker processes.
"""
from __future__ import annotations

import numpy as np

from ..frontend import random as _random


class Generator:
    """A torch.Generator-like stream: state is (seed, offset); each draw advances offset."""

    def __init__(self, seed: int = 0):
        self.manual_seed(seed)

    def manual_seed(self, seed: int) -> Generator:
        self._seed, self._offset = int(seed) & 0xFFFFFFFF, 0
        return self

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> np.ndarray:
        """[seed, offset] as int64, the layout of luban.get_rng_state()."""
        return np.array([self._seed, self._offset], dtype=np.int64)

    def set_state(self, state) -> Generator:
        state = np.asarray(state, dtype=np.int64).reshape(-1)
        if state.shape != (2,):
            raise ValueError(f"Generator.set_state: expected [seed, offset], got shape {state.shape}")
        self._seed, self._offset = int(state[0]) & 0xFFFFFFFF, int(state[1])
        return self

    def random_bits(self, n: int) -> np.ndarray:
        """n uint32 words, identical to luban's device stream for the same state."""
        bits = _random.host_bits(self._seed, self._offset, n)
        self._offset += n
        return bits


def random_bits(n: int, generator: Generator | None = None) -> np.ndarray:
    """Draw from `generator`, or from luban's global generator (advancing it) when None."""
    if generator is not None:
        return generator.random_bits(n)
    g = Generator().set_state(_random.get_rng_state())
    bits = g.random_bits(n)
    _random.set_rng_state(g.get_state())
    return bits


def randperm(n: int, generator: Generator | None = None) -> np.ndarray:
    """The same permutation luban.randperm draws from the same state, as int64 indices."""
    return np.argsort(random_bits(n, generator), kind="stable").astype(np.int64)


def randint(high: int, size: int, generator: Generator | None = None) -> np.ndarray:
    """`size` integers uniform in [0, high): floor(bits * high / 2**32), exact in integers."""
    return ((random_bits(size, generator).astype(np.uint64) * np.uint64(high)) >> np.uint64(32)).astype(np.int64)
