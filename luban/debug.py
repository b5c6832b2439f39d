"""Process-wide kernel counter, LUBAN_DEBUG output and the hook profilers listen on.

LUBAN_DEBUG=1: one line per kernel; 2: + time, GFLOP/s, bytes per kernel and a summary
table at exit; 3: + generated source; 4: + kernel AST. The level is read from the
environment once, at import (reading os.environ costs ~1 us, a tenth of a small kernel's
launch); change it at runtime with `set_level`.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

_count = 0


def _env_level() -> int:
    try:
        return int(os.environ.get("LUBAN_DEBUG", "0"))
    except ValueError:
        return 0


_level = _env_level()
_recorders: list = []  # active profiles (luban.profile contexts, the LUBAN_DEBUG=2 one)
timing = _level >= 2  # the launch path's one cheap check: time and record kernels?


def level() -> int:
    return _level


def set_level(n: int) -> None:
    global _level, timing
    _level = n
    timing = n >= 2 or bool(_recorders)


def kernel_count() -> int:
    """Kernels launched by this process so far (device copies not included)."""
    return _count


def reset_kernel_count() -> None:
    global _count
    _count = 0


def count_kernel(n: int = 1) -> None:
    global _count
    _count += n


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Event:
    """One timed thing. kind: "kernel", "copy", "compile", "schedule" or "render" (one per
    kernel compiled; its time is part of a "compile"); kernel and copy times are measured
    with the device synchronized before and after; flops/nbytes 0 where not applicable."""
    kind: str
    name: str
    device: str
    seconds: float
    flops: int = 0
    nbytes: int = 0


def add_recorder(r) -> None:
    """r.record(event) is called for every Event until remove_recorder(r)."""
    global timing
    _recorders.append(r)
    timing = True


def remove_recorder(r) -> None:
    global timing
    _recorders.remove(r)
    timing = _level >= 2 or bool(_recorders)


def record(ev: Event) -> None:
    for r in _recorders:
        r.record(ev)


def kernel_line(ev: Event, n_inputs: int) -> str:
    """The LUBAN_DEBUG=2 line for a kernel: time, achieved GFLOP/s and GB/s, bytes moved."""
    s = max(ev.seconds, 1e-9)
    return (f"[{ev.device}] {ev.name} <- {n_inputs} inputs  {ev.seconds * 1e6:.0f} us  "
            f"{ev.flops / s / 1e9:.2f} GFLOP/s  {_fmt_bytes(ev.nbytes)} ({ev.nbytes / s / 1e9:.2f} GB/s)")


def _fmt_bytes(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
