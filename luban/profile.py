"""luban.profile: where a step's time goes, per kernel.

    with luban.profile() as prof:
        step()
    print(prof.table())                      # or prof.table(sort_by="count", row_limit=10)

Inside the context every kernel launch is bracketed by device synchronizations (so its
time is the kernel's, not the queue's) and recorded with its FLOPs and bytes
(`codegen/cost.py`). Kernel compiles, schedule building and device copies are timed too;
the rest of the wall time is Python: building the lazy graph, autograd, launch overhead.
With LUBAN_DEBUG=2 in the environment at import, one profile spans the whole process
and its table is printed to stderr at exit.
"""
from __future__ import annotations

import atexit
import time
from dataclasses import dataclass

from . import debug
from .schedule import run as _run


@dataclass
class Row:
    """One line of the table: every launch of one kernel name on one device."""
    name: str
    device: str
    kind: str  # "kernel" or "copy"
    count: int = 0
    seconds: float = 0.0
    flops: int = 0
    nbytes: int = 0

    @property
    def mean_us(self) -> float:
        return self.seconds / self.count * 1e6

    @property
    def gflops(self) -> float:
        return self.flops / max(self.seconds, 1e-12) / 1e9

    @property
    def gbps(self) -> float:
        return self.nbytes / max(self.seconds, 1e-12) / 1e9


class Profile:
    def __init__(self):
        self.events: list[debug.Event] = []
        self._t0 = self._t1 = None

    def __enter__(self) -> Profile:
        _install_phase_timers()
        debug.add_recorder(self)
        self._t0, self._t1 = time.perf_counter(), None
        return self

    def __exit__(self, *exc) -> None:
        self._t1 = time.perf_counter()
        debug.remove_recorder(self)
        _remove_phase_timers()

    def record(self, ev: debug.Event) -> None:
        self.events.append(ev)

    @property
    def wall_s(self) -> float:
        """Wall time inside the context (so far, while it is still open)."""
        return (self._t1 or time.perf_counter()) - self._t0

    def kernel_count(self) -> int:
        return sum(1 for e in self.events if e.kind == "kernel")

    def totals(self) -> dict:
        """Seconds by category; "python" is the rest of the wall time."""
        t = {k: sum(e.seconds for e in self.events if e.kind == k) for k in ("kernel", "copy", "compile", "schedule")}
        t["wall"] = self.wall_s
        t["python"] = max(t["wall"] - t["kernel"] - t["copy"] - t["compile"] - t["schedule"], 0.0)
        return t

    def key_averages(self, sort_by: str = "total") -> list[Row]:
        """Kernel launches and copies grouped by (name, device); sort_by: total, count, mean,
        gflops, gbps (largest first) or name."""
        rows: dict = {}
        for e in self.events:
            if e.kind in ("kernel", "copy"):
                r = rows.get((e.name, e.device))
                if r is None:
                    r = rows[(e.name, e.device)] = Row(e.name, e.device, e.kind)
                r.count, r.seconds, r.flops, r.nbytes = r.count + 1, r.seconds + e.seconds, r.flops + e.flops, \
                    r.nbytes + e.nbytes
        keys = {"total": lambda r: -r.seconds, "count": lambda r: -r.count, "mean": lambda r: -r.mean_us,
                "gflops": lambda r: -r.gflops, "gbps": lambda r: -r.gbps, "name": lambda r: r.name}
        if sort_by not in keys:
            raise ValueError(f"sort_by must be one of {sorted(keys)}, got {sort_by!r}")
        return sorted(rows.values(), key=keys[sort_by])

    def table(self, sort_by: str = "total", row_limit: int | None = None) -> str:
        rows = self.key_averages(sort_by)
        t = self.totals()
        wall = max(t["wall"], 1e-12)
        w = max([len("name")] + [len(r.name) for r in rows])
        head = f"{'name':<{w}}  {'device':<6} {'count':>6} {'total ms':>9} {'%wall':>6} {'mean us':>9} " \
               f"{'GFLOP/s':>8} {'GB/s':>7}"
        lines = [head, "-" * len(head)]
        for r in rows[:row_limit]:
            lines.append(f"{r.name:<{w}}  {r.device:<6} {r.count:>6} {r.seconds * 1e3:>9.3f} "
                         f"{r.seconds / wall * 100:>5.1f}% {r.mean_us:>9.1f} {r.gflops:>8.2f} {r.gbps:>7.2f}")
        if row_limit is not None and len(rows) > row_limit:
            lines.append(f"... {len(rows) - row_limit} more")
        n_compiled = sum(1 for e in self.events if e.kind == "render")
        lines += ["-" * len(head), f"wall {t['wall'] * 1e3:.2f} ms = " + ", ".join(
            f"{label} {t[k] * 1e3:.2f} ms ({t[k] / wall * 100:.0f}%)" for k, label in (
                ("kernel", f"{self.kernel_count()} kernels"), ("copy", "copies"),
                ("compile", f"compile ({n_compiled} kernels)"), ("schedule", "scheduling"),
                ("python", "other Python")))]
        return "\n".join(lines)


def profile() -> Profile:
    """A context manager that records every kernel launched inside it; see the module doc."""
    return Profile()


# realize() belongs to schedule/run.py; its scheduling and batch-compile phases are timed
# by wrapping the functions it looks up at call time, only while a profile is open, so
# the unprofiled path runs the originals untouched.
_installed: list = []  # (owner, attr, original) while any profile is open
_depth = 0


def _phase_targets() -> list:
    cache = getattr(_run, "schedule_cache", None)  # schedule cache, when realize goes through it
    sched = (cache, "schedule") if cache is not None and hasattr(cache, "schedule") else (_run, "create_schedule")
    # every kernel compiled (in _precompile or on a miss in _program) is rendered once
    return [sched + ("schedule",), (_run, "_precompile", "compile"), (_run, "_render", "render")]


def _timed(fn, kind: str):
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            debug.record(debug.Event(kind, kind, "", time.perf_counter() - t0))
    return wrapper


def _install_phase_timers() -> None:
    global _depth
    _depth += 1
    if _depth == 1:
        for owner, attr, kind in _phase_targets():
            orig = getattr(owner, attr)
            _installed.append((owner, attr, orig))
            setattr(owner, attr, _timed(orig, kind))


def _remove_phase_timers() -> None:
    global _depth
    _depth -= 1
    if _depth == 0:
        while _installed:
            owner, attr, orig = _installed.pop()
            setattr(owner, attr, orig)


def _start_process_profile() -> None:
    """LUBAN_DEBUG=2: profile the whole process; print the summary at exit."""
    prof = Profile().__enter__()
    atexit.register(lambda: prof.events and debug.log("luban profile (whole process, LUBAN_DEBUG=2)\n" +
                                                      prof.table()))


if debug.level() >= 2:
    _start_process_profile()
