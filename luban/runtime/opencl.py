"""The `opencl` device: kernels rendered to OpenCL C by luban.codegen.opencl, built by
the platform's compiler through pyopencl (which caches programs on disk itself),
launched on one command queue. Any OpenCL 1.2+ platform runs it; PoCL runs it on the
CPU, so CI tests it for real. Pick a platform/device by a substring of its name with
LUBAN_OPENCL_DEVICE (default: the first device found)."""
from __future__ import annotations

import os

import numpy as np

from .. import dtypes
from . import compile_cache
from .device import Device

try:
    import pyopencl as cl
except ImportError:  # the device is then unavailable, with an error saying how to get it
    cl = None


class OpenCLProgram:
    __slots__ = ("kernel", "name", "checks_index")

    def __init__(self, kernel, name: str, checks_index: bool):
        self.kernel, self.name, self.checks_index = kernel, name, checks_index


def _pick_device():
    """The first device matching LUBAN_OPENCL_DEVICE that builds a kernel (an installed
    platform may be unable to, e.g. a PoCL whose LLVM does not know this CPU)."""
    if cl is None:
        raise RuntimeError("the opencl device needs pyopencl and an OpenCL platform: pip install pyopencl, "
                           "and a GPU driver or PoCL (e.g. apt-get install pocl-opencl-icd)")
    wanted = os.environ.get("LUBAN_OPENCL_DEVICE", "").lower()
    try:
        found = [(p, d) for p in cl.get_platforms() for d in p.get_devices()]
    except cl.Error as e:  # the ICD loader found no platform at all
        raise RuntimeError(f"no OpenCL platform found ({e}); install one, e.g. apt-get install pocl-opencl-icd") from None
    failed = []
    for p, d in found:
        if wanted in f"{p.name} {d.name}".lower():
            try:
                cl.Program(cl.Context([d]), "__kernel void probe(__global int* x) { x[0] = 1; }").build()
                return d
            except cl.Error as e:
                failed.append(f"{p.name}: {d.name} cannot build a kernel ({str(e).strip()[:200]})")
    names = "; ".join(f"{p.name}: {d.name}" for p, d in found) or "none"
    raise RuntimeError(f"no usable OpenCL device matches LUBAN_OPENCL_DEVICE={wanted!r}; devices: {names}"
                       + "".join(f"\n  {f}" for f in failed))


class OpenCLDevice(Device):
    name = "opencl"
    renderer = "opencl"

    def __init__(self):
        dev = self.cl_device = _pick_device()
        self.ctx = cl.Context([dev])
        self.queue = cl.CommandQueue(self.ctx)
        fp64 = "cl_khr_fp64" in dev.extensions
        self.dtypes = frozenset(dtypes.ALL) - (set() if fp64 else {dtypes.float64})
        local = dev.local_mem_size if dev.local_mem_type else 0  # CL_NONE (0): no local memory
        self.caps = {"float64": fp64, "local_memory": local, "max_local_size": dev.max_work_group_size}
        exact = dev.single_fp_config & cl.device_fp_config.CORRECTLY_ROUNDED_DIVIDE_SQRT
        # the reference rounds division and sqrt correctly, and never contracts into fma
        self.options = ["-cl-fp32-correctly-rounded-divide-sqrt"] if exact else []
        self.identity = f"{dev.platform.name} {dev.platform.version}\n{dev.name} {dev.driver_version}"
        self._err = self.alloc(4)
        self.copyin(self._err, np.zeros(1, np.int32))

    def alloc(self, nbytes: int):
        return cl.Buffer(self.ctx, cl.mem_flags.READ_WRITE, max(int(nbytes), 1))

    def free(self, buf) -> None:
        buf.release()

    def copyin(self, buf, host: np.ndarray) -> None:
        if host.nbytes:
            cl.enqueue_copy(self.queue, buf, np.ascontiguousarray(host), is_blocking=True)

    def copyout(self, host: np.ndarray, buf) -> None:
        if host.nbytes:
            cl.enqueue_copy(self.queue, host, buf, is_blocking=True)

    def compile(self, source: str, name: str) -> OpenCLProgram:
        # built from source each time: the platform caches programs on disk itself (PoCL in
        # ~/.cache/pocl, NVIDIA in ~/.nv), and loading a stored binary can abort the whole
        # process (PoCL 3.1 asserts on binaries saved after its own cache answered)
        program = self._build(source)
        return OpenCLProgram(getattr(program, name), name, "*err = 1" in source)

    def _build(self, source: str):
        try:
            return cl.Program(self.ctx, source).build(self.options)
        except cl.Error as e:
            raise compile_cache.CompileError(f"OpenCL build failed on {self.cl_device.name}:\n{e}") from None

    def launch(self, program: OpenCLProgram, bufs: list, global_size=(1,), local_size=None) -> None:
        program.kernel.set_args(*bufs, self._err)
        cl.enqueue_nd_range_kernel(self.queue, program.kernel, global_size, local_size)
        if program.checks_index:  # the flag is read back only for kernels that can set it
            err = np.zeros(1, np.int32)
            self.copyout(err, self._err)
            if err[0]:
                self.copyin(self._err, np.zeros(1, np.int32))
                raise IndexError(f"gather/scatter index out of range in kernel {program.name}")

    def synchronize(self) -> None:
        self.queue.finish()
