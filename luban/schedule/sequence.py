"""A fixed list of kernel launches run again and again as one unit (luban.jit's replay).

Every buffer the launches read or write is a numbered slot. The launches' outputs that
nothing outside reads (temporaries) get buffers planned once: an output takes a buffer
of its size freed by an earlier temporary, the latest freed first (still warm in cache),
as the allocator's pool would hand it out, so a run allocates only what escapes. The
device's `sequence` hook launches the whole list from native code where it has one."""
from __future__ import annotations

import heapq
import threading

from .. import debug
from ..graph.lazy import DeviceBuffer


def plan_reuse(outputs: list[tuple[int, int, int]]) -> tuple[list[int], list[int]]:
    """Buffers for outputs (made by step, read last by step >= made, bytes), in the order
    they are made: (a buffer id per output, the bytes of each buffer). An output takes a
    buffer of its size whose last reader ran before the step that makes it (never one of
    that step's own inputs), the latest freed first; else a new one."""
    ids, buffers, free, live = [], [], {}, []
    for made, last, n in outputs:
        while live and live[0][0] < made:
            _, j = heapq.heappop(live)
            free.setdefault(outputs[j][2], []).append(ids[j])
        idle = free.get(n)
        if idle:
            ids.append(idle.pop())
        else:
            ids.append(len(buffers))
            buffers.append(n)
        heapq.heappush(live, (last, len(ids) - 1))
    return ids, buffers


class Sequence:
    """launches: [(program, output slot, input slots, output bytes)] on `device`, in order;
    slots below nslots. `escaping`: the output slots read after a run (fresh buffers every
    run, returned by run()); every other output is a temporary. None of the launches may
    run twice at once (run() holds a lock)."""

    def __init__(self, device, launches: list, nslots: int, escaping: set):
        self.device, self.count = device, len(launches)
        self.fresh = [(out, n) for _, out, _, n in launches if out in escaping]
        self.buffers: list = []  # the temporaries', held for the life of the sequence
        self._lock = threading.Lock()
        hook = getattr(device, "sequence", None)
        self.runner = hook([(p, (out,) + tuple(ins)) for p, out, ins, _ in launches], nslots) if hook else None
        if self.runner is None:
            return
        last = {}
        for i, (_, _, ins, _) in enumerate(launches):
            for s in ins:
                last[s] = i
        temps = [(i, out, n) for i, (_, out, _, n) in enumerate(launches) if out not in escaping]
        ids, sizes = plan_reuse([(i, last.get(out, i), n) for i, out, n in temps])
        self.buffers = [DeviceBuffer(device, n) for n in sizes]
        for (_, out, _), b in zip(temps, ids):
            self.runner.set(out, self.buffers[b].handle)

    @property
    def usable(self) -> bool:
        return self.runner is not None

    def bind(self, slot: int, handle) -> None:
        """Bind an input slot to a buffer for every later run (a constant)."""
        self.runner.set(slot, handle)

    def run(self, binds: list) -> dict:
        """Bind (slot, handle) pairs for this run, launch everything; returns the
        escaping outputs' new buffers by slot."""
        with self._lock:
            for slot, handle in binds:
                self.runner.set(slot, handle)
            outs = {}
            for slot, n in self.fresh:
                outs[slot] = buf = DeviceBuffer(self.device, n)
                self.runner.set(slot, buf.handle)
            self.runner.run()
        debug.count_kernel(self.count)
        return outs
