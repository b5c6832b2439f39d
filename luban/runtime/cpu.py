"""The `cpu` device: kernels rendered to C by luban.codegen.c, compiled by the system C
compiler into shared objects (cached on disk by compile_cache), called through ctypes
(which releases the GIL). Buffers are 64-byte-aligned NumPy byte arrays."""
from __future__ import annotations

import ctypes
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import dtypes
from . import compile_cache
from .device import Device

ALIGN = 64  # a cache line, and the widest vector load
_omp_lib: list = []  # one loaded kernel library, through which the OpenMP runtime is reached


def _serial_after_fork() -> None:
    """GNU OpenMP's thread pool does not survive fork(): a child that runs a parallel
    region of a parent that ran one hangs. Kernels in a forked child use one thread."""
    if _omp_lib:
        _omp_lib[0].omp_set_num_threads(1)


os.register_at_fork(after_in_child=_serial_after_fork)


class CPUBuffer(np.ndarray):
    """A uint8 array that remembers its address: numpy's .ctypes.data costs microseconds
    per launch."""
    ptr: int


class CPUProgram:
    __slots__ = ("fn", "name", "lib")

    def __init__(self, fn, name: str, lib):
        self.fn, self.name, self.lib = fn, name, lib  # lib keeps the shared object loaded


class CPUDevice(Device):
    name = "cpu"
    renderer = "c"
    dtypes = frozenset(dtypes.ALL)
    caps = {"float64": True}
    # no -ffast-math: kernels must keep nan/inf and the reference's rounding (hence no
    # contraction into fma). Floating-point traps are never enabled, so ops may be
    # speculated (-fno-trapping-math lets branchless code vectorize); -fwrapv makes
    # integer overflow wrap as numpy's does. gcc 12's SLP vectorizer miscompiles max
    # reductions of comparison results (bools widened to 0xff), so only loops vectorize
    FLAGS = ("-O3", "-march=native", "-fPIC", "-shared", "-fopenmp", "-fno-math-errno",
             "-fno-trapping-math", "-ffp-contract=off", "-fwrapv", "-fno-tree-slp-vectorize",
             "-std=gnu11")

    def __init__(self):
        self._programs: dict = {}

    def alloc(self, nbytes: int):
        n = max(int(nbytes), 1)  # a valid pointer even for empty tensors
        raw = np.empty(n + ALIGN, dtype=np.uint8)
        start = -raw.ctypes.data % ALIGN
        buf = raw[start:start + n].view(CPUBuffer)  # the view keeps `raw` alive
        buf.ptr = buf.ctypes.data
        return buf

    def free(self, buf) -> None:
        pass  # the memory goes when the last reference to the buffer does

    def copyin(self, buf, host: np.ndarray) -> None:
        buf[: host.nbytes] = host.reshape(-1).view(np.uint8)

    def copyout(self, host: np.ndarray, buf) -> None:
        host.reshape(-1).view(np.uint8)[:] = buf[: host.nbytes]

    def compile(self, source: str, name: str) -> CPUProgram:
        prog = self._programs.get((source, name))
        if prog is None:
            prog = self._programs.setdefault((source, name), self._load(source, name))
        return prog

    def compile_many(self, items: list) -> list:
        """compile() each (source, name); the compiler runs as parallel subprocesses."""
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            return list(pool.map(lambda item: self.compile(*item), items))

    def _load(self, source: str, name: str) -> CPUProgram:
        path = compile_cache.build(source, self.FLAGS)
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:  # passed its checksum yet does not load: never trust it, rebuild
            lib = ctypes.CDLL(str(compile_cache.build(source, self.FLAGS, rebuild=True)))
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise compile_cache.CompileError(f"compiled kernel source defines no function {name!r}") from None
        fn.restype = None
        if not _omp_lib and hasattr(lib, "omp_set_num_threads"):
            _omp_lib.append(lib)
        return CPUProgram(fn, name, lib)

    def launch(self, program: CPUProgram, bufs: list, global_size=(1,), local_size=None) -> None:
        if program.fn.argtypes is None:
            program.fn.argtypes = [ctypes.c_void_p] * len(bufs) + [ctypes.POINTER(ctypes.c_int)]
        err = ctypes.c_int(0)
        program.fn(*[b.ptr for b in bufs], err)
        if err.value:
            raise IndexError(f"gather/scatter index out of range in kernel {program.name}")
