"""luban.jit: capture a step's kernels once, replay them on later calls.

    @luban.jit
    def step(x, y):
        opt.zero_grad(); loss = loss_fn(model(x), y); loss.backward(); opt.step()
        return loss

A call's signature is the *state the function can see*: its tensor arguments' shapes,
dtypes and devices, non-tensor arguments by value, and a walk of what its closure,
referenced globals and arguments reach (modules, optimizers, dicts, lists, objects):
every tensor's shape/dtype/device/requires_grad and which tensors share a node, every
Python scalar (lr, `training`, dropout p), container sizes and keys. A new signature
runs the function eagerly while recording (capture): the kernels launched, the host
uploads, and afterwards which tensors it rebound (parameters, optimizer state, running
stats, grads) and what it returned. A capture becomes replayable once two captures in a
row record the same tape and leave the state with the structure they found; then later
calls skip graph building and scheduling: they launch the recorded kernels on the
current buffers and rebind the same tensors.

Sound by construction, else eager:
- tensors are values (buffers are never written), so a replay's inputs are exactly the
  buffers the located tensors hold now; outputs are rebound, not written;
- random numbers: the generator's key upload is recomputed from the current seed and
  offset, and the offset advances as the eager call would (new numbers every step);
- any other upload must be byte-identical in both captures (a constant, e.g. the
  optimizer's hyperparameters, which the walk also guards through `param_groups`);
- a host read inside the function (`.item()`, an optimizer that computes on the host
  from a device value: Adam's step count) makes the replay unsound: that signature runs
  eagerly (or raises JitError with fallback=False). So does a tape that never settles.
Returned tensors (alone or in tuples, lists and dicts) are computed inside the call, as
part of the tape. Limits: they come back detached (no autograd history); state the walk does
not reach is tracked only through the kernels that read it (an unreached tensor that is
rebound changes the tape, so it never settles and runs eagerly).
"""
from __future__ import annotations

import sys
import types
from math import prod
from collections import OrderedDict

import numpy as np

from . import debug
from .autograd import is_grad_enabled
from .frontend import random as _random
from .graph.lazy import LazyBuffer, toposort
from .graph.ops import Op
from .runtime import default_device
from .schedule import realize, run as _run
from .schedule.cache import _arg_key
from .schedule.fusion import ScheduleItem
from .schedule.sequence import Sequence
from .tensor import Tensor

MAX_CAPTURES = 4  # captures per signature before giving up on replay
_MAX_DEPTH = 40
_SMALL_ARRAY = 4096  # numpy arrays up to this many bytes are guarded by content


class JitError(RuntimeError):
    """luban.jit cannot replay this function (or this call) soundly."""


# ---- the walk: what a call can see ------------------------------------------------------
def _roots(fn, args, kwargs) -> list:
    roots = [args, kwargs]
    if isinstance(fn, types.MethodType):
        roots.append(fn.__self__)
        fn = fn.__func__
    roots.append(fn)
    return roots


def _global_names(code, out: list) -> list:
    out.extend(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            _global_names(c, out)
    return out


class _Walk:
    """Tokens (the guard) and the reachable tensors, in a deterministic order."""
    __slots__ = ("tokens", "tensors", "seen", "nodes", "globals")

    def __init__(self, fn, args, kwargs):
        self.tokens, self.tensors, self.seen, self.nodes = [], [], {}, {}
        base = fn.__func__ if isinstance(fn, types.MethodType) else fn
        self.globals = getattr(base, "__globals__", None)
        for r in _roots(fn, args, kwargs):
            self.visit(r, 0)

    def visit(self, o, depth: int) -> None:
        tok = self.tokens
        t = type(o)
        kind = _KINDS.get(t) or _kind(o)
        if kind == "atom":
            tok.append((t, o))
            return
        if kind == "float":
            tok.append((float, o.hex()))
            return
        if kind == "scalar":
            tok.append((t, o.tobytes()))
            return
        if (kind == "dict" or kind == "set") and not o:  # as the dict loop records them inline
            tok.append((t, 0))
            return
        k = self.seen.get(id(o))
        if k is not None:  # shared or cyclic: record the sharing, not the object twice
            tok.append(("ref", k))
            return
        self.seen[id(o)] = len(self.seen)
        if kind == "tensor":
            lb = o.lazydata
            i = len(self.tensors)
            self.tensors.append(o)
            share = self.nodes.setdefault(id(lb), i)
            tok.append((Tensor, lb.shape, id(lb.dtype), lb.device, o.requires_grad, share, lb.buffer is not None))
            if o.grad is None:  # (inline: most tensors)
                tok.append((type(None), None))
            else:
                self.visit(o.grad, depth + 1)
            return
        if depth > _MAX_DEPTH:
            tok.append(("deep", id(o)))
            return
        if kind == "seq":
            tok.append((t, len(o)))
            for v in o:
                self.visit(v, depth + 1)
        elif kind == "dict":
            tok.append((t, len(o)))
            kinds = _KINDS
            for key, v in o.items():
                if type(key) is str:  # a module's attribute and parameter names, inline, as
                    tok.append(key)  # themselves (the only tokens that are not tuples: a hash kept)
                else:
                    self.visit(key, depth + 1)
                tv = type(v)  # inline too (a call costs more than the rest): atoms, and empty
                kv = kinds.get(tv)  # dicts and sets (a module's hooks and non-persistent buffer names)
                if kv == "atom":
                    tok.append((tv, v))
                elif (kv == "dict" or kv == "set") and not v:
                    tok.append((tv, 0))
                else:
                    self.visit(v, depth + 1)
        elif kind == "obj":
            tok.append(("obj", t))
            self.visit(vars(o), depth + 1)
        elif kind == "ndarray":
            body = o.tobytes() if o.nbytes <= _SMALL_ARRAY else id(o)
            tok.append((np.ndarray, o.shape, o.dtype.str, body))
        elif kind == "function":
            tok.append((types.FunctionType, id(o)))
            for cell in o.__closure__ or ():
                try:
                    self.visit(cell.cell_contents, depth + 1)
                except ValueError:  # an empty cell
                    tok.append(("empty",))
            if o.__globals__ is self.globals:  # the function's own module: its globals are state
                for name in _global_names(o.__code__, []):
                    if name in o.__globals__:
                        self.visit(o.__globals__[name], depth + 1)
        elif kind == "method":
            tok.append((types.MethodType,))
            self.visit(o.__self__, depth + 1)
            self.visit(o.__func__, depth + 1)
        elif kind == "fixed":
            tok.append(("fixed", id(o)))
        elif kind == "set":
            tok.append((t, len(o), hash(frozenset(x for x in o if not isinstance(x, Tensor)))))
        else:
            tok.append(("opaque", t, id(o)))


_KINDS: dict = {}  # type -> how the walk records its instances (decided once per type)


def _kind(o) -> str:
    """The kind of o's type for _Walk.visit (each test depends on the type only)."""
    if o is None or isinstance(o, (bool, int, str, bytes, complex)):
        kind = "atom"
    elif isinstance(o, float):
        kind = "float"
    elif isinstance(o, np.generic):
        kind = "scalar"
    elif isinstance(o, Tensor):
        kind = "tensor"
    elif isinstance(o, (list, tuple)):
        kind = "seq"
    elif isinstance(o, dict):
        kind = "dict"
    elif isinstance(o, np.ndarray):
        kind = "ndarray"
    elif isinstance(o, types.FunctionType):
        kind = "function"
    elif isinstance(o, types.MethodType):
        kind = "method"
    elif isinstance(o, (types.ModuleType, type, types.BuiltinFunctionType, Jit)):  # Jit: its own counters
        kind = "fixed"
    elif isinstance(o, (set, frozenset)):
        kind = "set"
    elif hasattr(o, "__dict__"):
        kind = "obj"
    else:
        kind = "opaque"
    if kind != "obj" or "__slots__" not in type(o).__dict__:  # a class with slots may still have __dict__ per instance
        _KINDS[type(o)] = kind
    return kind


# ---- capture --------------------------------------------------------------------------------
class _Recorder:
    def __init__(self):
        self.items: list[ScheduleItem] = []
        self.uploads: list = []  # (node, array copy, rng offset delta or None)
        self.host_reads = 0
        self.seed, self.offset = _random._state["seed"], _random._state["offset"]

    def on_items(self, items) -> None:
        self.items.extend(items)

    def on_upload(self, node, arr) -> None:
        delta = None
        # the generator's key (seed, seed hash, offset): recomputed at replay, not frozen
        if sys._getframe(2).f_code is _random.random_bits.__code__:
            mixed, hashed = _random._seed_key(self.seed)
            if int(arr[0]) == int(mixed[0]) and int(arr[1]) == int(hashed[0]):
                delta = (int(arr[2]) - self.offset) % (1 << 32)
        self.uploads.append((node, np.array(arr, copy=True), delta))

    def on_host_read(self, node) -> None:
        self.host_reads += 1


class _Tape:
    """What a capture did, as positions: slots (uploads, then kernel outputs), located
    tensors (walk ordinals at call start) and fixed nodes (kept alive here)."""

    def __init__(self, rec: _Recorder, start: _Walk, start_nodes: list, end: _Walk, result, rng_advance: int):
        self.fixed: dict[int, LazyBuffer] = {}
        ref: dict[int, tuple] = {}
        for i, t in enumerate(start.tensors):  # by walk order: the first tensor holding a node locates it
            ref.setdefault(id(start_nodes[i]), ("a", i))
        self.uploads = []
        for s, (node, arr, delta) in enumerate(rec.uploads):
            ref[id(node)] = ("s", s)
            if delta is None:
                self.fixed[id(node)] = node
                self.uploads.append(("const", id(node), arr.dtype.str, arr.shape, node.device, arr.tobytes()))
            else:
                self.uploads.append(("rng", delta, node.device))
        self.items = []
        for it in rec.items:
            ins = tuple(self._ref(ref, n) for n in it.inputs)
            ref[id(it.out)] = ("s", len(rec.uploads) + len(self.items))
            self.items.append((it.kernel, it.out.dtype, it.out.shape, it.out.device, ins))
        self.rng_advance = rng_advance
        self.programs = None  # per item: (device, program, global size, local size)
        self.sequence: Sequence | None = None  # the items as one, built with programs
        # rebound state: tensors whose node changed (end walk ordinals == start walk's)
        outs = [(k, t.lazydata) for k, t in enumerate(end.tensors)
                if k >= len(start_nodes) or t.lazydata is not start_nodes[k]]
        lazy: list[LazyBuffer] = []
        self.result = self._encode(result, ref, lazy)
        self.outputs = [(k, self._value(n, ref, lazy)) for k, n in outs]
        # one template for every lazy output, so nodes they share stay shared
        order = toposort(lazy)
        tpos = {id(n): i for i, n in enumerate(order)}
        self.template = [("leaf", self._ref(ref, n)) if n.buffer is not None else
                         (n.op, tuple(tpos[id(s)] for s in n.src), n.arg, n.dtype, n.shape, n.device) for n in order]
        self.lazy_pos = {id(n): tpos[id(n)] for n in lazy}
        self.outputs = [(k, ("t", self.lazy_pos[v[1]]) if v[0] == "lazy" else v) for k, v in self.outputs]
        self.result = self._fix_lazy(self.result)
        self.located = self._located()

    def _ref(self, ref: dict, node: LazyBuffer) -> tuple:
        r = ref.get(id(node))
        if r is None:  # realized before the call and held by no walked tensor: a constant
            self.fixed[id(node)] = node
            r = ref[id(node)] = ("f", id(node))
        return r

    def _value(self, node: LazyBuffer, ref: dict, lazy: list) -> tuple:
        if node.buffer is not None:
            return self._ref(ref, node)
        lazy.append(node)
        return ("lazy", id(node))

    def _encode(self, r, ref, lazy):
        if isinstance(r, Tensor):
            return ("T", self._value(r.lazydata, ref, lazy), r.dtype)
        if isinstance(r, (list, tuple)):
            return (type(r), tuple(self._encode(v, ref, lazy) for v in r))
        if isinstance(r, dict):
            return (dict, tuple((k, self._encode(v, ref, lazy)) for k, v in r.items()))
        if _holds_tensor(r, 0):
            raise JitError(f"luban.jit: the function returned a {type(r).__name__} holding tensors; return "
                           "tensors in a tuple, list or dict")
        return ("py", r)

    def _fix_lazy(self, e):
        if e[0] == "T":
            v = e[1]
            return ("T", ("t", self.lazy_pos[v[1]]) if v[0] == "lazy" else v, e[2])
        if e[0] in (list, tuple, dict):
            if e[0] is dict:
                return (dict, tuple((k, self._fix_lazy(v)) for k, v in e[1]))
            return (e[0], tuple(self._fix_lazy(v) for v in e[1]))
        return e

    def signature(self) -> tuple:
        """Comparable across captures: fixed nodes by identity, uploads by value."""
        tmpl = tuple(t if t[0] == "leaf" else (id(t[0]), t[1], _arg_key(id(t[0]), t[2]), id(t[3]), t[4], t[5])
                     for t in self.template)
        items = tuple((None if k is None else (k.ast, k.inputs), id(dt), sh, dev, ins)
                      for k, dt, sh, dev, ins in self.items)
        ups = tuple(u[:1] + u[2:] if u[0] == "const" else u for u in self.uploads)
        return (ups, items, self.rng_advance, tuple(self.outputs), tmpl, _freeze_result(self.result))

    # ---- replay ---------------------------------------------------------------------------
    def replay(self, walk: _Walk):
        tensors = walk.tensors
        pending = [tensors[i].lazydata for i in self.located if tensors[i].lazydata.buffer is None]
        if pending:  # state left lazy by the last step (e.g. running stats): realize it first
            realize(pending)
        slots: list[LazyBuffer] = []
        seed, offset = _random._state["seed"], _random._state["offset"]
        for u in self.uploads:
            if u[0] == "const":
                slots.append(self.fixed[u[1]])
            else:
                mixed, hashed = _random._seed_key(seed)
                key = np.concatenate([mixed, hashed, np.array([(offset + u[1]) % (1 << 32)], dtype=np.uint32)])
                slots.append(_run.from_numpy(key, _u32(), u[2]))
        _random._state["offset"] = offset + self.rng_advance

        def get(r):
            kind = r[0]
            if kind == "s":
                return slots[r[1]]
            if kind == "a":
                return tensors[r[1]].lazydata
            return self.fixed[r[1]]
        if self.programs is None:  # resolved on the first replay, not per launch
            self.programs = [None if k is None else _run.resolve(d, k) for k, _, _, d, _ in self.items]
            self.sequence = self._sequence()
        plain = not debug.timing and debug.level() == 0  # else the full path logs and times
        if plain and self.sequence is not None:
            self._run_sequence(slots, tensors)
        else:
            for (kernel, dtype, shape, device, ins), prog in zip(self.items, self.programs):
                out = LazyBuffer(Op.CONTIGUOUS, (), None, dtype, shape, device)
                if prog is not None and plain:
                    _run.launch_resolved(prog, out, [get(r) for r in ins])
                else:
                    _run._run_item(ScheduleItem(out, kernel, [get(r) for r in ins]))
                slots.append(out)
        built: list[LazyBuffer] = []
        add = built.append
        for t in self.template:  # (a W1 step rebuilds ~70 nodes of lazy gradients: kept lean)
            if t[0] == "leaf":
                add(get(t[1]))
            else:
                op, src, arg, dtype, shape, device = t
                ins = (built[src[0]],) if len(src) == 1 else tuple([built[i] for i in src])
                add(LazyBuffer(op, ins, arg, dtype, shape, device))

        def value(v):
            return built[v[1]] if v[0] == "t" else get(v)
        new = [(tensors[k], value(v)) for k, v in self.outputs]  # resolve all before rebinding any
        for t, node in new:
            t.lazydata = node
        return _decode(self.result, value)

    # ---- replay as one device sequence ----------------------------------------------------
    def _slot(self, r: tuple) -> int:
        """A ref's slot in the sequence's table: uploads and kernel outputs by position,
        then located tensors, then fixed nodes."""
        return r[1] if r[0] == "s" else self._apos[r[1]] if r[0] == "a" else self._fpos[r[1]]

    def _sequence(self) -> Sequence | None:
        """The kernels as one Sequence (schedule/sequence.py), if they all run on one device
        that has a sequence hook; else None (launched one at a time)."""
        devices = {d for *_, d, _ in self.items}
        if not self.items or len(devices) != 1 or any(p is None for p in self.programs):
            return None
        n = len(self.uploads) + len(self.items)
        self._apos = {a: n + k for k, a in enumerate(self.located)}
        self._fpos = {f: n + len(self.located) + k for k, f in enumerate(self.fixed)}
        launches = [(prog[1], len(self.uploads) + i, tuple(self._slot(r) for r in ins), dtype.itemsize * prod(shape))
                    for i, ((_, dtype, shape, _, ins), prog) in enumerate(zip(self.items, self.programs))]
        seq = Sequence(self.programs[0][0], launches, n + len(self.located) + len(self.fixed), self._escaping())
        if not seq.usable:
            return None
        for f, slot in self._fpos.items():
            seq.bind(slot, self.fixed[f].buffer.handle)
        for k, u in enumerate(self.uploads):
            if u[0] == "const":
                seq.bind(k, self.fixed[u[1]].buffer.handle)
        return seq

    def _escaping(self) -> set[int]:
        """Slots of kernel outputs read after the replay: rebound state, returned tensors and
        the templates' leaves; the rest are temporaries."""
        refs = [v for _, v in self.outputs] + [t[1] for t in self.template if t[0] == "leaf"]

        def walk(e):
            if e[0] == "T":
                refs.append(e[1])
            elif e[0] in (list, tuple, dict):
                for v in e[1]:
                    walk(v[1] if e[0] is dict else v)
        walk(self.result)
        return {r[1] for r in refs if r[0] == "s" and r[1] >= len(self.uploads)}

    def _run_sequence(self, slots: list, tensors: list) -> None:
        """Launch every kernel through the sequence; slots gets the escaping outputs' nodes
        (None for temporaries, which nothing after the replay reads)."""
        binds = [(k, slots[k].buffer.handle) for k, u in enumerate(self.uploads) if u[0] != "const"]
        binds += [(slot, tensors[a].lazydata.buffer.handle) for a, slot in self._apos.items()]
        outs = self.sequence.run(binds)
        for k, (_, dtype, shape, device, _) in enumerate(self.items, len(self.uploads)):
            buf = outs.get(k)
            node = None
            if buf is not None:
                node = LazyBuffer(Op.BUFFER, (), None, dtype, shape, device)
                node.buffer = buf
            slots.append(node)

    def _located(self) -> list[int]:
        """Walk ordinals of the tensors the kernels and templates read."""
        found = {r[1] for *_, ins in self.items for r in ins if r[0] == "a"}
        found |= {t[1][1] for t in self.template if t[0] == "leaf" and t[1][0] == "a"}
        return sorted(found)


def _u32():
    from .dtypes import uint32
    return uint32


def _holds_tensor(o, depth) -> bool:
    if isinstance(o, Tensor):
        return True
    if depth > 3 or not hasattr(o, "__dict__"):
        return False
    return any(_holds_tensor(v, depth + 1) for v in vars(o).values())


def _tensors_in(o, depth: int = 0) -> list:
    """The tensors in a function's result: itself, or inside (nested) tuples, lists and dicts."""
    if isinstance(o, Tensor):
        return [o]
    if depth > _MAX_DEPTH:
        return []
    if isinstance(o, (tuple, list)):
        return [t for v in o for t in _tensors_in(v, depth + 1)]
    if isinstance(o, dict):
        return [t for v in o.values() for t in _tensors_in(v, depth + 1)]
    return []


def _freeze_result(e):
    if e[0] == "py":
        try:
            hash(e[1])
            return e
        except TypeError:
            return ("py", id(e[1]))
    if e[0] == "T":
        return ("T", e[1], id(e[2]))
    if e[0] is dict:
        return (dict, tuple((k, _freeze_result(v)) for k, v in e[1]))
    return (e[0], tuple(_freeze_result(v) for v in e[1]))


def _decode(e, value):
    if e[0] == "T":
        return Tensor._wrap(value(e[1]))
    if e[0] == "py":
        return e[1]
    if e[0] is dict:
        return {k: _decode(v, value) for k, v in e[1]}
    return e[0](_decode(v, value) for v in e[1])


# ---- the decorator ----------------------------------------------------------------------
class _Entry:
    __slots__ = ("status", "tape", "sig", "captures", "reason")

    def __init__(self):
        self.status, self.tape, self.sig, self.captures, self.reason = "capture", None, None, 0, ""


_active = [False]  # a capture or replay in progress (jit inside jit is not supported)


class Jit:
    def __init__(self, fn, max_signatures: int = 8, fallback: bool = True):
        self.fn, self.max_signatures, self.fallback = fn, max_signatures, fallback
        self.entries: OrderedDict = OrderedDict()
        self.stats = {"captures": 0, "replays": 0, "eager": 0}
        self.__wrapped__ = fn
        self.__name__ = getattr(fn, "__name__", "jit")
        self.__doc__ = getattr(fn, "__doc__", None)

    def __get__(self, obj, objtype=None):  # decorating a method
        return self if obj is None else types.MethodType(self, obj)

    def reasons(self) -> list[str]:
        """Why signatures run eagerly (empty when every signature replays)."""
        return [e.reason for e in self.entries.values() if e.status == "eager"]

    def __call__(self, *args, **kwargs):
        if _active[0]:
            raise JitError(f"luban.jit: {self.__name__} was called inside another jitted function's capture or "
                           "replay; jit the outer function only")
        walk = _Walk(self.fn, args, kwargs)
        key = (tuple(walk.tokens), is_grad_enabled(), default_device())
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = _Entry()
            if len(self.entries) > self.max_signatures:
                self.entries.popitem(last=False)
        else:
            self.entries.move_to_end(key)
        if entry.status == "replay":
            self.stats["replays"] += 1
            _active[0] = True
            try:
                return entry.tape.replay(walk)
            finally:
                _active[0] = False
        if entry.status == "eager":
            return self._eager(entry, args, kwargs)
        return self._capture(entry, key, walk, args, kwargs)

    def _eager(self, entry, args, kwargs):
        if not self.fallback:
            raise JitError(f"luban.jit: cannot replay {self.__name__}: {entry.reason}")
        self.stats["eager"] += 1
        return self.fn(*args, **kwargs)

    def _capture(self, entry, key, walk, args, kwargs):
        self.stats["captures"] += 1
        entry.captures += 1
        # state left lazy must be buffers, so the tape can find it through its tensor
        lazy = [t.lazydata for t in walk.tensors if t.lazydata.buffer is None]
        if lazy:
            realize(lazy)
        start_nodes = [t.lazydata for t in walk.tensors]
        rec = _Recorder()
        _run._recorder, _active[0] = rec, True
        try:
            result = self.fn(*args, **kwargs)
            # returned tensors are computed inside the call, so a replay's kernels produce
            # them (left lazy, they would be rebuilt as graph and scheduled on every read)
            out = [t.lazydata for t in _tensors_in(result) if t.lazydata.buffer is None]
            if out:
                realize(out)
        finally:
            _run._recorder, _active[0] = None, False
        reason = None
        if rec.host_reads:
            reason = (f"it reads device values on the host {rec.host_reads} time(s) (.item(), .numpy(), or an "
                      "optimizer that computes on the host, e.g. Adam's step count): a replay would freeze them")
        elif _random._state["seed"] != rec.seed or _random._state["offset"] < rec.offset:
            reason = "it reseeds the random generator"
        if reason is None:
            end = _Walk(self.fn, args, kwargs)
            tape = _Tape(rec, walk, start_nodes, end, result, _random._state["offset"] - rec.offset)
            sig = tape.signature()
            settled = (tuple(end.tokens), is_grad_enabled(), default_device()) == key
            if settled and sig == entry.sig:
                entry.status, entry.tape = "replay", tape
            else:
                entry.tape, entry.sig = tape, sig
                if entry.captures >= MAX_CAPTURES:
                    reason = (f"its recorded kernels, uploads or state did not repeat in {MAX_CAPTURES} calls "
                              "(host data that changes every call, or state the walk cannot see)")
        if reason is not None:
            entry.status, entry.tape, entry.sig, entry.reason = "eager", None, None, reason
            if debug.level() >= 1:
                debug.log(f"luban.jit: {self.__name__} runs eagerly: {reason}")
            if not self.fallback:
                raise JitError(f"luban.jit: cannot replay {self.__name__}: {reason}")
        return result


def jit(fn=None, *, max_signatures: int = 8, fallback: bool = True):
    """Decorator: replay `fn`'s kernels on calls with a signature seen before (see module doc).
    fallback=False raises JitError where a signature cannot be replayed, instead of running
    it eagerly."""
    if fn is None:
        return lambda f: Jit(f, max_signatures, fallback)
    return Jit(fn, max_signatures, fallback)


__all__ = ["jit", "Jit", "JitError"]
jit.JitError, jit.Jit = JitError, Jit  # `luban.jit` is the function: reach these as luban.jit.JitError
