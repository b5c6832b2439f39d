"""Process-wide kernel counter and LUBAN_DEBUG output.

LUBAN_DEBUG=1: one line per kernel; 2: + timings; 3: + generated source; 4: + kernel AST.
"""
from __future__ import annotations

import os
import sys

_count = 0


def level() -> int:
    try:
        return int(os.environ.get("LUBAN_DEBUG", "0"))
    except ValueError:
        return 0


def kernel_count() -> int:
    """Kernels launched by this process so far (device copies not included)."""
    return _count


def reset_kernel_count() -> None:
    global _count
    _count = 0


def count_kernel() -> None:
    global _count
    _count += 1


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
