"""Schedule cache: a graph built again with the same structure reuses its schedule.

A training step builds the same graph every step, only over different buffers. The
key is the graph's structure in toposort order: every unrealized node's op, argument,
dtype, shape, device and sources (as positions in that order), every realized leaf's
dtype, shape and device, and which positions are the targets. Positions encode how
nodes are shared, never which buffers they hold, so a hit binds the cached kernels to
this graph's nodes and skips planning and lowering.

Ops and dtypes are process-lifetime singletons keyed by id() (their hashes are Python
code; id is not). Float constants are keyed by their bits (float.hex), so 0.0 and -0.0
(equal as floats) never share an entry.
"""
from __future__ import annotations

from collections import OrderedDict

from ..graph.lazy import LazyBuffer, toposort
from ..graph.ops import Op
from . import fusion
from .fusion import ScheduleItem

MAX_ENTRIES = 128  # schedules kept (least recently used dropped first)

_entries: OrderedDict = OrderedDict()  # key -> [(out pos, kernel, input positions)]
stats = {"hits": 0, "misses": 0}

_CONST, _CAST, _BITCAST = id(Op.CONST), id(Op.CAST), id(Op.BITCAST)


def _arg_key(op_id: int, arg):
    if op_id == _CONST:
        # type first: True, 1 and 1.0 are equal as Python values
        return (type(arg).__name__, arg.hex() if isinstance(arg, float) else arg)
    if op_id == _CAST or op_id == _BITCAST:
        return id(arg)
    return arg


def structure_key(targets: list[LazyBuffer]) -> tuple[tuple, list[LazyBuffer]]:
    """(key, toposort order): equal keys mean create_schedule would make the same kernels."""
    order = toposort(targets)
    pos: dict[int, int] = {}
    parts = []
    for i, n in enumerate(order):
        pos[id(n)] = i
        if n.buffer is not None:
            parts.append((id(n.dtype), n.shape, n.device))
        else:
            op = id(n.op)
            parts.append((op, tuple([pos[id(s)] for s in n.src]), _arg_key(op, n.arg), id(n.dtype), n.shape,
                          n.device))
    return (fusion.MAX_DEPTH, tuple(parts), tuple([pos[id(t)] for t in targets])), order


def schedule(targets: list[LazyBuffer]) -> list[ScheduleItem]:
    """create_schedule(targets), from the cache when this graph's structure was seen."""
    key, order = structure_key(targets)
    plan = _entries.get(key)
    if plan is not None:
        _entries.move_to_end(key)
        stats["hits"] += 1
        return [ScheduleItem(order[o], k, [order[i] for i in ins]) for o, k, ins in plan]
    stats["misses"] += 1
    items = fusion.create_schedule(targets, order)
    pos = {id(n): i for i, n in enumerate(order)}
    # positions only: an entry must not keep this step's buffers alive
    _entries[key] = [(pos[id(it.out)], it.kernel, [pos[id(i)] for i in it.inputs]) for it in items]
    if len(_entries) > MAX_ENTRIES:
        _entries.popitem(last=False)
    return items


def clear() -> None:
    _entries.clear()
    stats["hits"] = stats["misses"] = 0
