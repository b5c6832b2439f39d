"""DataLoader worker processes: the loop each worker runs, and the main-process side that
hands out index batches round-robin and returns the results in sampler order.

Protocol: index queues carry (generation, task, indices) or None (exit); the shared
result queue carries (generation, task, worker id, pickled payload). The generation
changes every epoch, so results left over from an abandoned epoch are dropped.
"""
from __future__ import annotations

import itertools
import os
import pickle
import queue
import random
import signal
import time
import traceback
import weakref

import numpy as np

from ..frontend.random import manual_seed
from ..runtime import set_default_device
from .fetch import Exhausted, IterableFetcher, MapFetcher, WorkerInfo, from_host, set_worker_info, to_host

_POLL_S = 1.0  # how often a waiting process checks that the other side is still alive
_JOIN_S = 2.0  # grace period for a worker to exit before it is terminated


class _KeyErrorMessage(str):
    """KeyError's str() is the repr of its argument; this keeps the traceback readable."""

    def __repr__(self):
        return self


class WorkerError:
    """An exception raised in a worker, carried to the main process with its traceback text."""

    def __init__(self, worker_id: int, where: str, exc: BaseException):
        self.worker_id, self.where, self.exc_name = worker_id, where, type(exc).__name__
        self.traceback = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:  # a class defined inside a function can't be pickled; RuntimeError stands in
            pickle.dumps(type(exc))
            self.exc_type = type(exc)
        except Exception:
            self.exc_type = None

    def reraise(self):
        # built in a helper: a local holding the exception here would make a reference
        # cycle through its traceback and keep the worker pool alive until gc runs
        raise self._exception()

    def _exception(self) -> BaseException:
        msg = (f"Caught {self.exc_name} in DataLoader worker process {self.worker_id} {self.where}.\n"
               f"Original {self.traceback}")
        if self.exc_type is KeyError:
            msg = _KeyErrorMessage(msg)
        try:
            return (self.exc_type or RuntimeError)(msg)
        except Exception:  # exceptions whose constructor wants other arguments
            return RuntimeError(msg)


def worker_loop(worker_id, num_workers, seed, cfg, index_queue, result_queue, done_event):
    dataset, is_iterable, auto_collation, collate_fn, drop_last, worker_init_fn = cfg
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C hits the whole group; the main process shuts us down
    set_default_device("numpy")  # anything a dataset builds here stays in host memory
    set_worker_info(WorkerInfo(worker_id, num_workers, seed, dataset))
    random.seed(seed)
    manual_seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)  # forked workers would otherwise share NumPy's global stream
    init_error = None
    if worker_init_fn is not None:
        try:
            worker_init_fn(worker_id)
        except Exception as e:
            init_error = WorkerError(worker_id, "in worker_init_fn", e)
    fetcher_cls = IterableFetcher if is_iterable else MapFetcher
    fetcher, generation, parent = None, None, os.getppid()
    while True:
        try:
            task = index_queue.get(timeout=_POLL_S)
        except queue.Empty:
            if os.getppid() != parent:  # the main process died without shutting us down
                break
            continue
        if task is None:
            break
        if done_event.is_set():
            continue
        gen, idx, index = task
        if gen != generation:  # a new epoch: iterable datasets start over
            generation, fetcher = gen, fetcher_cls(dataset, auto_collation, collate_fn, drop_last)
        try:
            if init_error is not None:
                payload = pickle.dumps(init_error)
            else:  # pickled here so an unpicklable batch is reported, not lost in the queue's thread
                payload = pickle.dumps(to_host(fetcher.fetch(index)), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:
            payload = pickle.dumps(WorkerError(worker_id, fetcher.where(index), e))
        result_queue.put((gen, idx, worker_id, payload))
    if done_event.is_set():  # nobody reads results any more: don't wait to flush them
        result_queue.cancel_join_thread()


def _shutdown(workers, index_queues, result_queue, done_event):
    done_event.set()
    for q in index_queues:
        q.put(None)
    for w in workers:
        w.join(_JOIN_S)
        if w.is_alive():
            w.terminate()
            w.join()
    for q in (*index_queues, result_queue):
        q.cancel_join_thread()
        q.close()


class MultiProcessSource:
    """Batches from `num_workers` processes, in sampler order whichever finishes first."""

    def __init__(self, cfg, num_workers: int, base_seed: int, ctx, prefetch_factor: int, timeout: float,
                 persistent: bool):
        self._n, self._prefetch, self._timeout, self._persistent = num_workers, prefetch_factor, timeout, persistent
        self._result_queue, self._done = ctx.Queue(), ctx.Event()
        self._index_queues, self._workers = [], []
        for wid in range(num_workers):
            q = ctx.Queue()
            w = ctx.Process(target=worker_loop, daemon=True,
                            args=(wid, num_workers, (base_seed + wid) & 0xFFFFFFFF, cfg, q, self._result_queue,
                                  self._done))
            w.start()
            self._index_queues.append(q)
            self._workers.append(w)
        # runs when this object is collected (end of a for loop, break, exception, del) or at
        # exit; it holds no reference to self, so it can't keep self alive
        self.shutdown = weakref.finalize(self, _shutdown, self._workers, self._index_queues, self._result_queue,
                                         self._done)
        self._gen = 0

    def start_epoch(self, index_iter) -> None:
        self._gen += 1
        self._index_iter, self._tasks = index_iter, {}  # task -> (worker,) or (worker, data)
        self._send_idx = self._rcvd_idx = 0
        self._active = [True] * self._n
        self._next_worker = itertools.cycle(range(self._n))
        for _ in range(self._prefetch * self._n):
            self._put_task()

    def _put_task(self) -> None:
        if not any(self._active):
            return
        index = next(self._index_iter, Exhausted)
        if index is Exhausted:
            return
        wid = next(w for w in self._next_worker if self._active[w])
        self._index_queues[wid].put((self._gen, self._send_idx, index))
        self._tasks[self._send_idx] = (wid,)
        self._send_idx += 1

    def _get(self):
        deadline = time.monotonic() + self._timeout if self._timeout > 0 else None
        while True:
            wait = _POLL_S if deadline is None else max(0.0, min(_POLL_S, deadline - time.monotonic()))
            try:
                return self._result_queue.get(timeout=wait)
            except queue.Empty:
                pass
            dead = [w for w in self._workers if not w.is_alive()]
            if dead:
                self.shutdown()
                raise RuntimeError("DataLoader worker(s) exited unexpectedly: "
                                   + ", ".join(f"pid {w.pid} (exit code {w.exitcode})" for w in dead))
            if deadline is not None and time.monotonic() >= deadline:
                raise RuntimeError(f"DataLoader timed out after {self._timeout} seconds waiting for a batch "
                                   f"from its {self._n} worker processes")

    def _deliver(self, data):
        del self._tasks[self._rcvd_idx]
        self._rcvd_idx += 1
        self._put_task()
        if isinstance(data, WorkerError):
            data.reraise()
        return from_host(data)

    def next_data(self):
        while True:
            # tasks given to a worker whose iterable dataset ran out will never be answered
            while self._rcvd_idx < self._send_idx:
                info = self._tasks[self._rcvd_idx]
                if len(info) == 2 or self._active[info[0]]:
                    break
                del self._tasks[self._rcvd_idx]
                self._rcvd_idx += 1
            else:
                if not self._persistent:
                    self.shutdown()
                raise StopIteration
            info = self._tasks[self._rcvd_idx]
            if len(info) == 2:
                return self._deliver(info[1])
            gen, idx, wid, payload = self._get()
            if gen != self._gen:
                continue
            data = pickle.loads(payload)
            if isinstance(data, Exhausted):
                self._active[wid] = False
                self._put_task()
            elif idx != self._rcvd_idx:
                self._tasks[idx] = (wid, data)
            else:
                return self._deliver(data)
