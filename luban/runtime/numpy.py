"""The reference device: buffers are NumPy arrays, programs are Python closures made
by `luban.codegen.numpy_interp`. Small on purpose: it is the oracle the other devices
are tested against, and the smallest example of a device."""
from __future__ import annotations

import numpy as np

from .. import dtypes
from .device import Device


class NumpyDevice(Device):
    name = "numpy"
    renderer = "numpy_interp"
    dtypes = frozenset(dtypes.ALL)

    def alloc(self, nbytes: int):
        return np.empty(nbytes, dtype=np.uint8)

    def free(self, buf) -> None:
        pass

    def copyin(self, buf, host: np.ndarray) -> None:
        buf[: host.nbytes] = host.reshape(-1).view(np.uint8)

    def copyout(self, host: np.ndarray, buf) -> None:
        host.reshape(-1).view(np.uint8)[:] = buf[: host.nbytes]

    def compile(self, source, name: str):
        return source  # already a callable

    def launch(self, program, bufs: list, global_size=(1,), local_size=None) -> None:
        program(bufs)
