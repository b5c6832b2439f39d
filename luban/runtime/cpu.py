"""The `cpu` device: kernels rendered to C by luban.codegen.c, compiled by the system C
compiler into shared objects (cached on disk by compile_cache), called through ctypes
(which releases the GIL). Buffers are 64-byte-aligned NumPy byte arrays. Pattern claims
(GEMMs and convolutions, in luban's own GEMM) are in cpu_claims.py."""
from __future__ import annotations

import ctypes
import functools
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import dtypes
from . import compile_cache, cpu_claims, cpu_gemm, cpu_sequence
from .device import Device

ALIGN = 64  # a cache line, and the widest vector load

# OpenMP threads keep libgomp's default wait policy: spin a little after a parallel
# region, then sleep. OMP_WAIT_POLICY=PASSIVE (set here while NumPy's OpenBLAS ran the
# claimed GEMMs, whose own spinning threads it starved) makes every kernel wake a sleeping
# thread: on a VM that wake-up took as long as the work (W4: 1.0 cores used, 18 ms a step,
# against 1.6 cores and 12 ms spinning).
_serials = itertools.count()  # CPUBuffer.serial (next() on a count is atomic under the GIL)
_omp_lib: list = []  # one loaded kernel library, through which the OpenMP runtime is reached


def _serial_after_fork() -> None:
    """GNU OpenMP's thread pool does not survive fork(): a child that runs a parallel
    region of a parent that ran one hangs. Kernels in a forked child use one thread."""
    if _omp_lib:
        _omp_lib[0].omp_set_num_threads(1)


os.register_at_fork(after_in_child=_serial_after_fork)


class CPUBuffer(np.ndarray):
    """A uint8 array that remembers its address (numpy's .ctypes.data costs microseconds
    per launch) and its serial: a number no other allocation or write had, renewed by
    alloc (a pooled buffer reused too), copyin and a launch writing it, so a buffer with
    the same serial as before holds the same values."""
    ptr: int
    serial: int


class CPUProgram:
    __slots__ = ("fn", "name", "lib")

    def __init__(self, fn, name: str, lib):
        self.fn, self.name, self.lib = fn, name, lib  # lib keeps the shared object loaded


class CPUClaimed:
    """A program the device claimed (see Device.claim): luban's own GEMM on the launch's
    buffers instead of generated code. gemm: the cpu_claims.Program; epilogue: None, or
    the generated program that reads the GEMM's result from a buffer of `nbytes` as its
    last input; block: None, or the same epilogue over a block of the result, which the
    GEMM can call on each block it finishes (what cpu_sequence needs to run them from C)."""
    __slots__ = ("run", "name", "gemm", "epilogue", "nbytes", "block")

    def __init__(self, run, name: str, gemm=None, epilogue=None, nbytes: int = 0, block=None):
        self.run, self.name, self.gemm, self.epilogue, self.nbytes = run, name, gemm, epilogue, nbytes
        self.block = block


# Below this many multiply-adds a claimed GEMM's fixed cost (tables, dispatch) is more
# than a generated kernel takes. Batched dot products (m = n = 1) stay generated: the
# generated kernel shares them among threads as plain reductions. So does a matrix times
# a vector where the matrix is read along k: the GEMM would pack all of it (transposed)
# to fill 1 of its 16 vector lanes, the generated reduce reads it once in place (W3's
# LayerNorm backward, 2048x128 times a weight vector: 70-100 us claimed, 28-39 generated).
CLAIM_MIN_WORK = 1 << 15


# no -ffast-math: kernels must keep nan/inf and the reference's rounding (hence no
# contraction into fma). Floating-point traps are never enabled, so ops may be
# speculated (-fno-trapping-math lets branchless code vectorize); -fwrapv makes integer
# overflow wrap as numpy's does. gcc 12's SLP vectorizer miscompiles max reductions of
# comparison results (bools widened to 0xff), so only loops vectorize
BASE_FLAGS = ("-O3", "-march=native", "-fPIC", "-shared", "-fopenmp", "-fno-math-errno", "-fno-trapping-math",
              "-ffp-contract=off", "-fwrapv", "-fno-tree-slp-vectorize", "-std=gnu11")
# glibc's vector math library: loops calling exp2f/log2f/sinf vectorize (codegen/c.py)
LIBMVEC_FLAGS = ("-DLUBAN_LIBMVEC", "-Wl,--no-as-needed", "-lmvec")
_PROBE = "#include <math.h>\nfloat luban_probe(float x) { return exp2f(x); }\n"


def compile_flags() -> tuple:
    """The compiler flags of kernels: with libmvec where the compiler links it (glibc),
    else without (musl, macOS: scalar math calls, same results)."""
    # keyed by what picks the compiler ($CC, $PATH): finding it costs ~0.1 ms of stat calls
    return _flags_for(os.environ.get("CC", ""), os.environ.get("PATH", ""), LIBMVEC_FLAGS)


@functools.lru_cache(maxsize=None)
def _flags_for(cc: str, path: str, libmvec: tuple) -> tuple:
    try:
        compile_cache.build(_PROBE, BASE_FLAGS + libmvec)  # cached on disk once it builds
    except compile_cache.CompileError:
        return BASE_FLAGS
    return BASE_FLAGS + libmvec


class CPUDevice(Device):
    name = "cpu"
    renderer = "c"
    dtypes = frozenset(dtypes.ALL)
    caps = {"float64": True, "row_loops": True}
    @property
    def FLAGS(self) -> tuple:  # noqa: N802 (a constant for the life of the process)
        return compile_flags()

    # Freed buffers wait here, by size, for the next alloc of that size: a training step
    # allocates the same sizes every step, and fresh large allocations are fresh pages
    # from the OS, each faulted in on first touch (W2: ~10 ms per 75 MB im2col buffer)
    POOL_BYTES = int(os.environ.get("LUBAN_CPU_POOL_MB", "1024")) << 20

    def __init__(self):
        self._programs: dict = {}
        self.claimed_launches = 0  # launches that ran a claimed program (tests, debugging)
        self._claims_made = False  # whether a claim was made: compile_many builds the GEMM too
        self._pool: dict[int, list] = {}
        self._pooled = 0
        self._pool_lock = threading.Lock()  # free() runs wherever the garbage collector does

    def claim(self, pattern) -> CPUClaimed | None:
        """luban's own GEMM (cpu_claims, cpu_gemm) for a Gemm or Contraction pattern worth
        one (see CLAIM_MIN_WORK), else None."""
        kind = getattr(pattern, "kind", None)
        if kind not in ("gemm", "contraction") or pattern.dtype not in ("float32", "float64"):
            return None
        g = pattern
        if kind == "gemm":
            dims = {"b": g.batch, "m": g.m, "n": g.n, "k": g.k}
            name = f"gemm_{g.dtype}_{g.batch}x{g.m}x{g.n}x{g.k}"
        else:
            dims = {r: int(np.prod([n for n, x in zip(g.sizes, g.roles) if x == r])) for r in "bmnk"}
            name = f"contract_{g.dtype}_{'x'.join(map(str, g.sizes))}_{g.roles}"
        if dims["b"] * dims["m"] * dims["n"] * dims["k"] < CLAIM_MIN_WORK or \
                (dims["m"] == 1 and dims["n"] == 1 and dims["b"] > 1):
            return None
        if kind == "gemm" and (g.n == 1 and g.a.strides[1] != 1 or g.m == 1 and g.b.strides[2] != 1):
            return None  # a matrix-vector product the GEMM would pack the matrix for (see above)
        fn = cpu_claims.program(g)
        self._claims_made = True
        if g.epilogue is None:
            return CPUClaimed(lambda bufs: fn(bufs, self), name, fn)
        prog, global_size, local_size = g.epilogue
        nbytes = dims["b"] * dims["m"] * dims["n"] * np.dtype(g.dtype).itemsize

        def run(bufs):  # the GEMM into a buffer of its own, then the generated rest
            tmp = self.alloc(nbytes)
            fn([tmp] + bufs[1:], self)
            self.launch(prog, bufs + [tmp], global_size, local_size)
        return CPUClaimed(run, name + "+epilogue", fn, prog, nbytes, g.epilogue_block)

    def sequence(self, launches: list, nslots: int) -> cpu_sequence.CPUSequence:
        """A fixed list of launches run from one C loop (see Device.sequence)."""
        return cpu_sequence.CPUSequence(self, launches, nslots)

    def alloc(self, nbytes: int):
        n = max(int(nbytes), 1)  # a valid pointer even for empty tensors
        with self._pool_lock:
            idle = self._pool.get(n)
            if idle:
                self._pooled -= n
                buf = idle.pop()
                buf.serial = next(_serials)
                return buf
        raw = np.empty(n + ALIGN, dtype=np.uint8)
        start = -raw.ctypes.data % ALIGN
        buf = raw[start:start + n].view(CPUBuffer)  # the view keeps `raw` alive
        buf.ptr = buf.ctypes.data
        buf.serial = next(_serials)
        return buf

    def free(self, buf) -> None:
        """Keep the buffer for reuse while the pool has room; else its memory goes when
        the last reference to it does."""
        n = len(buf)
        with self._pool_lock:
            if self._pooled + n <= self.POOL_BYTES:
                self._pool.setdefault(n, []).append(buf)
                self._pooled += n

    def empty_cache(self) -> None:
        """Release the pooled idle buffers (as torch.cuda.empty_cache does for its pool)."""
        with self._pool_lock:
            self._pool.clear()
            self._pooled = 0

    def copyin(self, buf, host: np.ndarray) -> None:
        buf[: host.nbytes] = host.reshape(-1).view(np.uint8)
        buf.serial = next(_serials)

    def copyout(self, host: np.ndarray, buf) -> None:
        host.reshape(-1).view(np.uint8)[:] = buf[: host.nbytes]

    def compile(self, source: str, name: str) -> CPUProgram:
        prog = self._programs.get((source, name))
        if prog is None:
            prog = self._programs.setdefault((source, name), self._load(source, name))
        return prog

    def compile_many(self, items: list) -> list:
        """compile() each (source, name); the compiler runs as parallel subprocesses. Once
        a pattern was claimed, luban's GEMM library (~1.7 s to compile) is built among them
        rather than alone at its first launch (a failure there is raised at that launch)."""
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            if self._claims_made:
                pool.submit(cpu_gemm.build, self.FLAGS)
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

    def launch(self, program: CPUProgram | CPUClaimed, bufs: list, global_size=(1,), local_size=None) -> None:
        bufs[0].serial = next(_serials)
        if type(program) is CPUClaimed:
            self.claimed_launches += 1
            program.run(bufs)
            return
        if program.fn.argtypes is None:
            program.fn.argtypes = [ctypes.c_void_p] * len(bufs) + [ctypes.POINTER(ctypes.c_int)]
        err = ctypes.c_int(0)
        program.fn(*[b.ptr for b in bufs], err)
        if err.value:
            raise IndexError(f"gather/scatter index out of range in kernel {program.name}")
