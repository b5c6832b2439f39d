"""How one batch is made, the same way in the main process and in worker processes.

Workers never touch a device: tensors a worker builds are handed back as `HostArray`s
(plain NumPy) and become Tensors in the main process (`from_host`).
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np

from ..tensor import Tensor


class WorkerInfo:
    """What `get_worker_info()` returns inside a worker (torch's fields)."""

    def __init__(self, id: int, num_workers: int, seed: int, dataset):
        self.id, self.num_workers, self.seed, self.dataset = id, num_workers, seed, dataset

    def __repr__(self) -> str:
        return f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed})"


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """The current worker's WorkerInfo, or None in the main process (e.g. to shard an
    IterableDataset across workers)."""
    return _worker_info


def set_worker_info(info: WorkerInfo) -> None:
    global _worker_info
    _worker_info = info


class HostArray:
    """A NumPy array standing in for a Tensor on its way from a worker to the main process."""
    __slots__ = ("array",)

    def __init__(self, array: np.ndarray):
        self.array = array


def make_tensor(array: np.ndarray, device=None):
    """A Tensor in the main process; a HostArray inside a worker."""
    return HostArray(array) if _worker_info is not None else Tensor(array, device=device)


def map_structure(fn, obj):
    """Apply `fn` to every leaf of nested dicts, lists, tuples and namedtuples."""
    if isinstance(obj, Mapping):
        items = {k: map_structure(fn, v) for k, v in obj.items()}
        try:
            return type(obj)(items)
        except TypeError:  # a Mapping whose constructor takes other arguments
            return items
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(map_structure(fn, v) for v in obj))
    if isinstance(obj, (list, tuple)):
        items = [map_structure(fn, v) for v in obj]
        try:
            return type(obj)(items)
        except TypeError:
            return items
    return fn(obj)


def to_host(obj):
    return map_structure(lambda x: HostArray(x.numpy()) if isinstance(x, Tensor) else x, obj)


def from_host(obj):
    return map_structure(lambda x: Tensor(x.array) if isinstance(x, HostArray) else x, obj)


class Exhausted:
    """Returned, not raised, when an iterable dataset has no more batches: a worker reports
    any exception from user code, StopIteration included, as an error."""


class MapFetcher:
    def __init__(self, dataset, auto_collation: bool, collate_fn, drop_last: bool):
        self.dataset, self.auto_collation, self.collate_fn = dataset, auto_collation, collate_fn
        self.index = None  # the dataset index being read, for error messages

    def fetch(self, index):
        if self.auto_collation:
            samples = []
            for i in index:
                self.index = i
                samples.append(self.dataset[i])
        else:
            self.index = index
            samples = self.dataset[index]
        self.index = None
        return self.collate_fn(samples)

    def where(self, index) -> str:
        if self.index is not None:
            return f"while reading dataset index {self.index}"
        return f"in collate_fn for the batch of indices {index}"


class IterableFetcher:
    def __init__(self, dataset, auto_collation: bool, collate_fn, drop_last: bool):
        self.dataset, self.auto_collation = dataset, auto_collation
        self.collate_fn, self.drop_last = collate_fn, drop_last
        self.dataset_iter, self.ended = None, False

    def fetch(self, index):
        if self.ended:
            return Exhausted()
        if self.dataset_iter is None:  # created here so an error in __iter__ is reported like any other
            self.dataset_iter = iter(self.dataset)
        if self.auto_collation:
            samples = list(itertools.islice(self.dataset_iter, len(index)))
            self.ended = len(samples) < len(index)
            if not samples or (self.drop_last and self.ended):
                return Exhausted()
        else:
            samples = next(self.dataset_iter, Exhausted())
            if isinstance(samples, Exhausted):
                self.ended = True
                return samples
        return self.collate_fn(samples)

    def where(self, index) -> str:
        return "while reading the next element of the iterable dataset"
