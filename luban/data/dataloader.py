"""DataLoader (torch.utils.data.DataLoader semantics) with resumable shuffling.

Randomness: every epoch draws one worker base seed from the loader's generator, then
the sampler draws its order. Without a `generator` (or `seed`) the loader owns one,
seeded from luban's global generator on the first epoch, so `luban.manual_seed` fixes
every later epoch's order.

Resume: `state_dict()` holds the epoch, the batches already yielded in it, and the
generator states at its start; after `load_state_dict()` the next `iter()` redraws that
epoch's order and skips the batches already seen (without loading them, for map-style
datasets), so training resumes exactly where it stopped. The state is plain ints and
lists, ready for `luban.save`.
"""
from __future__ import annotations

import itertools
import multiprocessing

from .collate import default_collate, default_convert
from .dataset import IterableDataset
from .fetch import Exhausted, IterableFetcher, MapFetcher
from .generator import Generator, random_bits
from .sampler import BatchSampler, RandomSampler, SequentialSampler, _InfiniteConstantSampler
from .worker import MultiProcessSource


class _Progress:
    """Where the loader is: shared with its iterators instead of the loader itself, so a
    persistent worker pool never keeps its loader alive."""

    def __init__(self):
        self.epoch = self.batches = self.token = 0
        self.rng = None  # generator states at the start of the current epoch
        self.in_epoch = self.resume = False
        self.generators = []

    def finish(self) -> None:
        self.epoch, self.batches, self.in_epoch = self.epoch + 1, 0, False
        self.rng = [g.get_state() for g in self.generators]


class _SingleProcessSource:
    def __init__(self, fetcher, index_iter):
        self._fetcher, self._index_iter = fetcher, index_iter

    def next_data(self):
        data = self._fetcher.fetch(next(self._index_iter))
        if isinstance(data, Exhausted):
            raise StopIteration
        return data


class _LoaderIter:
    def __init__(self, loader: DataLoader, source, discard: int):
        self._loader, self._source, self._discard = loader, source, discard
        self._progress, self._token = loader._progress, loader._progress.token

    def __iter__(self):
        return self

    def __len__(self) -> int:
        return len(self._loader)

    def __next__(self):
        p = self._progress
        current = p.token == self._token  # an older iterator must not move a newer epoch's count
        while True:
            try:
                data = self._source.next_data()
            except StopIteration:
                if current and p.in_epoch:
                    p.finish()
                raise
            if self._discard:
                self._discard -= 1
                continue
            if current:
                p.batches += 1
            return data


class DataLoader:
    """torch.utils.data.DataLoader's arguments and behaviour (no pin_memory); `seed=s` is
    short for `generator=Generator(s)`."""

    def __init__(self, dataset, batch_size: int | None = 1, shuffle: bool | None = None, sampler=None,
                 batch_sampler=None, num_workers: int = 0, collate_fn=None, drop_last: bool = False,
                 timeout: float = 0, worker_init_fn=None, multiprocessing_context=None,
                 generator: Generator | None = None, *, prefetch_factor: int | None = None,
                 persistent_workers: bool = False, seed: int | None = None):
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing. "
                             "let num_workers > 0 to enable multiprocessing, otherwise set prefetch_factor to None.")
        if prefetch_factor is not None and prefetch_factor < 0:
            raise ValueError("prefetch_factor option should be non-negative")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        if seed is not None:
            if generator is not None:
                raise ValueError("pass either seed or generator, not both")
            generator = Generator(seed)
        self._is_iterable = isinstance(dataset, IterableDataset)
        if self._is_iterable:
            for name, value in (("shuffle", shuffle or None), ("sampler", sampler), ("batch_sampler", batch_sampler)):
                if value is not None:
                    raise ValueError(f"DataLoader with IterableDataset: expected unspecified {name} option, "
                                     f"but got {name}={value}")
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, "
                                 "and drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with drop_last")

        # the loader's own generator when none is given: seeded from luban's global one on first use
        self.generator, self._generator = generator, generator or Generator()
        self._seed_from_global = generator is None
        if sampler is None:
            if self._is_iterable:
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=self._generator)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)

        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.sampler, self.batch_sampler = sampler, batch_sampler
        self.num_workers, self.timeout, self.worker_init_fn = num_workers, timeout, worker_init_fn
        self.prefetch_factor = 2 if prefetch_factor is None and num_workers > 0 else prefetch_factor
        self.persistent_workers, self.multiprocessing_context = persistent_workers, multiprocessing_context
        self.collate_fn = collate_fn or (default_collate if batch_sampler is not None else default_convert)
        self._progress = _Progress()
        self._workers = None  # the pool kept across epochs when persistent_workers

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    @property
    def _index_sampler(self):
        return self.batch_sampler if self._auto_collation else self.sampler

    def __len__(self) -> int:
        if not self._is_iterable:
            return len(self._index_sampler)
        n = len(self.dataset)
        if self.batch_size is not None:
            n = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        return n

    def _generators(self) -> list[Generator]:
        """The loader's generator, then any other generator its sampler draws from."""
        gens = [self._generator]
        for s in (self.sampler, getattr(self.batch_sampler, "sampler", None)):
            g = getattr(s, "generator", None)
            if isinstance(g, Generator) and all(g is not h for h in gens):
                gens.append(g)
        return gens

    def state_dict(self) -> dict:
        """{"epoch", "batches" yielded in it, "rng": generator states at its start}."""
        p = self._progress
        rng = None if p.rng is None else [[int(v) for v in s] for s in p.rng]
        return {"epoch": p.epoch, "batches": p.batches, "rng": rng}

    def load_state_dict(self, state: dict) -> None:
        p = self._progress
        if state["rng"] is not None:
            gens = self._generators()
            if len(state["rng"]) != len(gens):
                raise ValueError(f"DataLoader.load_state_dict: the state has {len(state['rng'])} generator states, "
                                 f"this loader draws from {len(gens)} generators")
            for g, s in zip(gens, state["rng"]):
                g.set_state(s)
            self._seed_from_global = False
            p.rng = [g.get_state() for g in gens]
        p.epoch, p.batches, p.resume, p.in_epoch = int(state["epoch"]), int(state["batches"]), True, False

    def __iter__(self) -> _LoaderIter:
        p = self._progress
        p.generators = self._generators()
        resume, p.resume = p.resume, False
        if resume and p.rng is not None:
            skip = p.batches
        else:
            if self._seed_from_global:
                self._generator.manual_seed(int(random_bits(1)[0]))
                self._seed_from_global = False
            if p.in_epoch:  # the previous epoch was left before its end
                p.epoch += 1
            p.batches = skip = 0
            p.rng = [g.get_state() for g in p.generators]
        p.in_epoch, p.token = True, p.token + 1
        base_seed = int(self._generator.random_bits(1)[0])
        index_iter = iter(self._index_sampler)
        if not self._is_iterable:  # skip by index: the skipped samples are never loaded
            index_iter, skip = itertools.islice(index_iter, skip, None), 0
        fetcher_cls = IterableFetcher if self._is_iterable else MapFetcher
        if self.num_workers == 0:
            source = _SingleProcessSource(fetcher_cls(self.dataset, self._auto_collation, self.collate_fn,
                                                      self.drop_last), index_iter)
        else:
            source = self._workers or MultiProcessSource(
                (self.dataset, self._is_iterable, self._auto_collation, self.collate_fn, self.drop_last,
                 self.worker_init_fn), self.num_workers, base_seed, self._mp_context(), self.prefetch_factor,
                self.timeout, self.persistent_workers)
            if self.persistent_workers:
                self._workers = source
            source.start_epoch(index_iter)
        return _LoaderIter(self, source, skip)

    def _mp_context(self):
        ctx = self.multiprocessing_context
        if ctx is None:  # fork: fast to start, and datasets need not be picklable
            return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
        return multiprocessing.get_context(ctx) if isinstance(ctx, str) else ctx
