"""The device interface: everything a backend must provide to run every luban model.

A device knows buffers, programs and launches; it knows nothing of Tensor, autograd
or the graph. Generated source comes from a renderer in `luban.codegen`.
docs/porting.md walks through writing one.
"""
from __future__ import annotations

from typing import Any

import numpy as np


class Device:
    """Required: alloc, free, copyin, copyout, compile, launch, synchronize.

    name: the device string users pass (`tensor.to("cpu")`).
    renderer: the module whose render(kernel, caps) turns a Kernel into source: a short
      name for one in `luban.codegen` ("c", "opencl"), or a vendor module's full name.
    dtypes: the dtypes this device claims (the conformance suite tests exactly these).
    caps: optional codegen hints the renderer reads; a device without one leaves it out:
      "float64": the device computes in double (float32 sums accumulate in it),
      "local_memory": bytes of work-group shared memory (0 or absent: none),
      "max_local_size": the most work-items in one work-group,
      "row_loops": its renderer runs a kernel's last dim as a loop inside each position
      of the others (the C renderer), so the scheduler fuses a row's reduces (a
      softmax, a LayerNorm) into the kernel that reads them: computed once per row.

    Optional, pattern claims (for speed only, never for correctness):
    claim(pattern) -> program | None. Before generating code for a kernel, the runtime
    offers the device the kernel's plain description if `luban.codegen.patterns`
    recognizes one (today `Gemm`: batch/m/n/k, each operand's element offset and
    strides; dispatch on `pattern.kind`, never import codegen). The device returns a
    program that computes exactly that, typically a vendor library call (cpu: BLAS), or
    None to get generated code as usual. Where the pattern is only part of the kernel,
    the runtime asks first without, then with `pattern.epilogue` set: the device's own
    compiled program for the rest, to launch on [out, in0, ..., pattern's result] (so
    claim must be cheap and side-effect free), and, where the renderer module has a
    `render_block(kernel, rows, cols, caps)`, `pattern.epilogue_block`: the same rest over
    one block of the (m, n) result, for a library that can call it on each block it
    finishes (cpu: the GEMM, from a jit replay). A claimed program is launched like any
    other, `launch(program, bufs, (1,), None)`, on [out, in0, in1, ...]; it may round as
    its library does (float32 sums accumulate in float32). LUBAN_NO_CLAIMS=1 turns
    claims off, so the generated path stays tested.

    Optional, for speed: sequence(launches, nslots) -> runner | None. launches is a
    fixed list of (program, slots): launch(program, [buffer of each slot]), slots[0] the
    output, slots indexing a table of nslots buffers. The runner's set(slot, handle) binds
    a slot until set again, and run() launches them all in order (raising as launch
    does), from native code where it can: luban.jit replays a step this way instead of
    one Python call per kernel. Without it (or given None) each is launched in turn.
    """

    name: str = "?"
    renderer: str = "?"
    dtypes: frozenset = frozenset()
    caps: dict = {}

    def alloc(self, nbytes: int) -> Any:
        """Return an opaque buffer handle of at least `nbytes` bytes (nbytes may be 0)."""
        raise NotImplementedError

    def free(self, buf: Any) -> None:
        raise NotImplementedError

    def copyin(self, buf: Any, host: np.ndarray) -> None:
        """Copy a C-contiguous host array's bytes into `buf`."""
        raise NotImplementedError

    def copyout(self, host: np.ndarray, buf: Any) -> None:
        """Copy `buf`'s bytes into the C-contiguous host array `host`."""
        raise NotImplementedError

    def compile(self, source: Any, name: str) -> Any:
        """Turn rendered source into a launchable program (cache it on disk if costly)."""
        raise NotImplementedError

    def launch(self, program: Any, bufs: list, global_size: tuple = (1,), local_size: tuple | None = None) -> None:
        """Run `program` on buffers [out, in0, in1, ...] as `global_size` work-items in
        groups of `local_size` (None: the device chooses), as the renderer asked. Raises
        IndexError if the kernel reported an out-of-range gather/scatter index."""
        raise NotImplementedError

    def synchronize(self) -> None:
        pass
