"""The cpu device's `sequence` hook (see Device.sequence): a fixed list of launches run
by one C loop, so a luban.jit replay pays one ctypes call for a run of kernels instead
of ~8 us of Python each (W4's 93 kernels: ~0.6 ms a step, 7% of it).

Launches address a table of buffer slots; the loop reads each step's arguments from it
(slot + byte offset) and calls the step's function: a generated kernel (pointer
arguments and an error flag; called through a switch on its arity) or luban's GEMM
(cpu_gemm's C function with the claimed program's tables). A GEMM with an epilogue
writes its result to a scratch slot of the sequence's own and runs the epilogue on
each block of it as it finishes the block (where the claim has a block epilogue: the
result is read back from cache, not memory), else as a second step. A GEMM whose B
(packed: a Linear's weight) is the same input buffer as on the run before reads B
packed once into a cache of its own (see run). What the loop cannot
call (a contraction of a zero-padded copy, a kernel of more than MAX_ARGS arguments)
runs in Python between C runs."""
from __future__ import annotations

import ctypes
import os
import threading

import numpy as np

from . import compile_cache

MAX_ARGS = 32
# longs per step: kind (0 kernel, 1 GEMM), function, argument count, first argument, GEMM
# arguments, block epilogue (or 0: its arguments follow the GEMM's three), C transposed,
# the GEMM's packed-B cache (or 0: see CPUSequence.run)
_STEP = 8


def _source() -> str:
    cases = "".join(
        f"    case {n}: ((void (*)({'void *, ' * n}int *))fn)({', '.join(f'a[{i}]' for i in range(n))}, err); break;\n"
        for n in range(1, MAX_ARGS + 1))
    return f"""
typedef void (*epilogue_t)(void *const *, long, long, long, long);
typedef long (*gemm_t)(void *, const void *, const void *, long, long, long, long, const long *, const long *,
                       const long *, const long *, const long *, const long *, const long *, const long *,
                       const long *, epilogue_t, void *const *, long, long *);
static void call(void *fn, long n, void **a, int *err) {{
  switch (n) {{
{cases}  }}
}}
/* steps [lo, hi); returns the index of a step that failed (*info: the GEMM's unallocated
   bytes, or 0 for a kernel's index error), else hi */
long luban_sequence(long lo, long hi, const long *steps, const long *slots, const long *offs, char *const *ptrs,
                    long *info) {{
  void *a[{MAX_ARGS}];
  for (long s = lo; s < hi; s++) {{
    const long *st = steps + {_STEP} * s, *sl = slots + st[3], *of = offs + st[3];
    for (long i = 0; i < st[2]; i++) a[i] = ptrs[sl[i]] + of[i];
    if (st[0] == 0) {{
      int err = 0;
      call((void *)st[1], st[2], a, &err);
      if (err) {{ *info = 0; return s; }}
    }} else {{
      const long *g = (const long *)st[4];
      long short_ = ((gemm_t)st[1])(a[0], a[1], a[2], g[0], g[1], g[2], g[3], (const long *)g[4], (const long *)g[5],
                                    (const long *)g[6], (const long *)g[7], (const long *)g[8], (const long *)g[9],
                                    (const long *)g[10], (const long *)g[11], (const long *)g[12],
                                    (epilogue_t)st[5], (void *const *)(a + 3), st[6], (long *)st[7]);
      if (short_) {{ *info = short_; return s; }}
    }}
  }}
  return hi;
}}
"""


_fn: list = []
_lock = threading.Lock()


def _consecutive(offsets) -> bool:
    return bool(np.all(np.diff(offsets) == 1))


def _loop(flags: tuple):
    if not _fn:
        with _lock:
            if not _fn:
                lib = ctypes.CDLL(str(compile_cache.build(_source(), flags)))
                fn = lib.luban_sequence
                fn.argtypes = [ctypes.c_long, ctypes.c_long] + [ctypes.c_void_p] * 5
                fn.restype = ctypes.c_long
                _fn.append((fn, lib))  # lib keeps the shared object loaded
    return _fn[0][0]


class CPUSequence:
    """launches: [(program, slots)], slots[0] the output's. set() binds a slot to a buffer
    until set again; run() runs every launch in order on the bound buffers."""

    # the most memory one sequence's packed-B caches take (a copy of each weight): GEMMs
    # past it pack as usual
    PACK_CACHE_BYTES = int(os.environ.get("LUBAN_CPU_PACK_CACHE_MB", "512")) << 20

    def __init__(self, dev, launches: list, nslots: int):
        from .cpu import CPUClaimed, CPUProgram
        self.dev = dev
        scratch = max((p.nbytes for p, _ in launches if type(p) is CPUClaimed and p.epilogue is not None), default=0)
        self.ptrs = np.zeros(nslots + 1, np.int64)  # slot nslots: the GEMM epilogues' scratch
        self.handles: list = [None] * (nslots + 1)
        if scratch:
            self.set(nslots, dev.alloc(scratch))
        steps, slots, offs, self._keep = [], [], [], []
        made = {sl[0] for _, sl in launches}
        self._bcaches: list = []  # (step, B's slot, bytes of B packed) of GEMMs whose B is an input
        self.segments: list = []  # (lo, hi) of C steps, or (program, slots, name) run in Python
        self.names: list = []  # per C step, for errors

        def step(kind, fn, args, name, gemm_args=None, block=0, flip=0):
            if not self.segments or not isinstance(self.segments[-1], list):
                self.segments.append([len(steps), len(steps)])
            steps.append((kind, fn, len(args), len(slots), 0 if gemm_args is None else gemm_args.ctypes.data,
                          block, flip, 0))
            slots.extend(s for s, _ in args)
            offs.extend(o for _, o in args)
            self.names.append(name)
            self.segments[-1][1] = len(steps)

        for prog, sl in launches:
            if type(prog) is CPUProgram and len(sl) < MAX_ARGS:
                step(0, ctypes.cast(prog.fn, ctypes.c_void_p).value, [(s, 0) for s in sl], prog.name)
                continue
            ops = prog.gemm.operands() if type(prog) is CPUClaimed and prog.gemm is not None else None
            epi = prog.epilogue if ops is not None else None
            if ops is None or (epi is not None and (type(epi) is not CPUProgram or len(sl) + 1 >= MAX_ARGS)):
                self.segments.append((prog, list(sl), prog.name))
                continue
            t = prog.gemm.tables
            fn, gargs = t.native(prog.gemm.dtype.itemsize, dev.FLAGS)
            self._keep += [t, gargs]
            (ai, ao), (bi, bo) = ops
            a, b = (sl[ai], ao), (sl[bi], bo)
            if t.swapped:
                a, b = b, a
            out = nslots if epi is not None else sl[0]
            if t.M and t.N and t.nb == 1 and b[0] not in made and not _consecutive(t.tables[2][:16]):
                self._bcaches.append((len(steps), b[0], -(-t.N * prog.gemm.dtype.itemsize // 64) * 64 * t.K))
            block = prog.block if epi is not None and type(prog.block) is CPUProgram and \
                len(sl) + 4 <= MAX_ARGS else None
            if block is not None:  # the epilogue's arguments after the GEMM's
                if t.M and t.N and t.nb:
                    step(1, fn, [(out, 0), a, b] + [(s, 0) for s in sl] + [(nslots, 0)], prog.name, gargs,
                         ctypes.cast(block.fn, ctypes.c_void_p).value, int(t.swapped))
                continue
            if t.M and t.N and t.nb:
                step(1, fn, [(out, 0), a, b], prog.name, gargs)
            if epi is not None:
                step(0, ctypes.cast(epi.fn, ctypes.c_void_p).value, [(s, 0) for s in sl] + [(nslots, 0)], epi.name)
        self.segments = [tuple(s) for s in self.segments]
        self.steps = np.array(steps, np.int64).reshape(-1, _STEP)
        # per cache, made when first used: (memory, {its address, whether it holds B}, the
        # record's address); and the serial of the buffer B was last read from
        self._caches: list = [None] * len(self._bcaches)
        self._read_from = [None] * len(self._bcaches)
        self._cached = 0  # bytes of the caches made
        self.slots, self.offs = np.array(slots, np.int64), np.array(offs, np.int64)
        self._loop = _loop(dev.FLAGS)
        self._info = ctypes.c_long(0)
        # the tables' addresses, fixed from here on (.ctypes.data costs microseconds a call)
        self._refs = [a.ctypes.data for a in (self.steps, self.slots, self.offs, self.ptrs)]

    def set(self, slot: int, handle) -> None:
        self.ptrs[slot] = handle.ptr
        self.handles[slot] = handle

    def run(self) -> None:
        # A GEMM whose B is an input holding the same values as on the run before (a
        # weight, in inference: a cpu buffer's serial changes whenever it is allocated or
        # written) packs B once into a cache of its own and reads it from there on later
        # runs (W4 ~5% a step faster). A B seen once (a weight being trained) is packed
        # as usual, panel by panel beside the products.
        for k, (step, slot, nbytes) in enumerate(self._bcaches):
            serial = getattr(self.handles[slot], "serial", None)
            cache = self._caches[k]
            if serial is None or serial != self._read_from[k]:
                self._read_from[k] = serial
                if cache is not None:
                    cache[1][1] = 0
                self.steps[step, 7] = 0
            elif not self.steps[step, 7]:  # the same B twice in a row: cache it from here on
                if cache is None:
                    if self._cached + nbytes > self.PACK_CACHE_BYTES:
                        continue
                    self._cached += nbytes
                    mem = self.dev.alloc(nbytes)
                    record = np.array([mem.ptr, 0], np.int64)
                    cache = self._caches[k] = (mem, record, record.ctypes.data)
                self.steps[step, 7] = cache[2]
        for seg in self.segments:
            if len(seg) == 2:
                lo, hi = seg
                done = self._loop(lo, hi, *self._refs, ctypes.byref(self._info))
                if done != hi:
                    name = self.names[done]
                    if self._info.value:
                        raise MemoryError(f"luban cpu GEMM {name}: could not allocate {self._info.value} bytes of "
                                          "packing memory")
                    raise IndexError(f"gather/scatter index out of range in kernel {name}")
            else:
                prog, sl, _ = seg
                self.dev.launch(prog, [self.handles[s] for s in sl])
