"""Runs a schedule: allocate outputs, render and compile kernels (cached in-process by
kernel structure, on disk by the device), launch, and turn nodes into buffers."""
from __future__ import annotations

import importlib
import os
import time

import numpy as np

from .. import debug
from ..codegen.cost import bytes_moved, flops
from ..graph.lazy import DeviceBuffer, LazyBuffer
from ..graph.ops import Op
from ..runtime import get_device
from . import cache as schedule_cache
from .fusion import ScheduleItem, create_schedule  # noqa: F401  (create_schedule: re-exported)

_programs: dict = {}  # (device name, kernel AST, input spec) -> (program, global size, local size)


def _key(device, kernel) -> tuple:
    return (device.name, kernel.ast, kernel.inputs)


def _renderer(name: str):
    """A renderer in luban.codegen by its short name, else a vendor's module by its name."""
    try:
        return importlib.import_module(f"luban.codegen.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"luban.codegen.{name}":
            raise
        return importlib.import_module(name)


def _render(device, kernel):
    r = _renderer(device.renderer).render(kernel, device.caps)
    if debug.level() >= 3:
        debug.log(str(r.source))
    return r


def _claims_on(device) -> bool:
    """Whether the device may claim patterns now (LUBAN_NO_CLAIMS=1 turns claims off)."""
    return hasattr(device, "claim") and os.environ.get("LUBAN_NO_CLAIMS") != "1"


def _claim_parts(device, kernel):
    """((pattern, rest of the kernel or None), the device's program for the pattern alone)
    where the device claims the kernel's pattern (runtime/device.py: a recognized GEMM
    run through a vendor library, the rest of the kernel as a generated epilogue), else
    None."""
    if not _claims_on(device):
        return None
    from ..codegen import patterns  # (here: claims stay out of the import path of devices without them)
    found = patterns.recognize(kernel)  # (pattern, rest of the kernel or None) or None
    prog = None if found is None else device.claim(found[0])
    return None if prog is None else (found, prog)


def _program(device, kernel):
    key = _key(device, kernel)
    # cached under ("claim", key): the claimed program, or None where the device declined
    claimed = _programs.get(("claim",) + key, False) if _claims_on(device) else None
    if claimed is False:
        parts = _claim_parts(device, kernel)
        prog = None if parts is None else parts[1]
        if parts is not None and parts[0][1] is not None:  # worth it: compile the rest, ask again
            import dataclasses
            (pattern, rest), _ = parts
            prog = device.claim(dataclasses.replace(pattern, epilogue=_program(device, rest),
                                                    epilogue_block=_block_program(device, pattern, rest)))
        claimed = _programs[("claim",) + key] = None if prog is None else (prog, (1,), None)
        if prog is not None and debug.level() >= 2:
            debug.log(f"  claimed {kernel.name} as {getattr(prog, 'name', prog)}")
    if claimed is not None:
        return claimed
    prog = _programs.get(key)
    if prog is None:
        _check_claimed(device, [kernel.dtype] + [dt for dt, _ in kernel.inputs])
        t0 = time.perf_counter()
        r = _render(device, kernel)
        prog = _programs[key] = (device.compile(r.source, r.name), r.global_size, r.local_size)
        if debug.level() >= 2:
            debug.log(f"  compiled {kernel.name} in {(time.perf_counter() - t0) * 1e3:.1f} ms")
    return prog


def _block_program(device, pattern, epilogue):
    """The epilogue over blocks of a GEMM's result (see patterns.Gemm.epilogue_block), or
    None where the pattern, the epilogue or the device's renderer does not allow it."""
    r = _render_block(device, pattern, epilogue)
    return None if r is None else device.compile(r.source, r.name)


def _render_block(device, pattern, epilogue):
    render_block = getattr(_renderer(device.renderer), "render_block", None)
    if render_block is None or pattern.kind != "gemm" or pattern.batch != 1 or \
            (pattern.m > 1 and pattern.out_strides[1] != pattern.n) or (pattern.n > 1 and pattern.out_strides[2] != 1):
        return None
    return render_block(epilogue, pattern.m, pattern.n, device.caps)


def _check_claimed(device, dts) -> None:
    missing = sorted({dt.name for dt in dts} - {dt.name for dt in device.dtypes})
    if missing:
        raise TypeError(f"device {device.name!r} does not support {', '.join(missing)} (it claims "
                        f"{', '.join(sorted(d.name for d in device.dtypes))}); convert with .to(dtype) "
                        f"or move the tensor to a device that does, e.g. .to('cpu')")


def _precompile(items: list[ScheduleItem]) -> None:
    """Compile every new kernel of a schedule at once, in parallel where the device can.
    A kernel the device claims needs no code of its own: its generated epilogue (and that
    epilogue over blocks) is compiled instead (W3's cold first step: ~30 GEMM kernels
    were compiled for nothing and their epilogues one at a time)."""
    by_device: dict = {}
    for it in items:
        if it.kernel is None:
            continue
        dev = get_device(it.out.device)
        key = _key(dev, it.kernel)
        if key not in _programs and (_programs.get(("claim",) + key) is None or not _claims_on(dev)) and \
                hasattr(dev, "compile_many"):
            by_device.setdefault(dev.name, (dev, {}))[1][key] = it.kernel
    for dev, todo in by_device.values():
        if len(todo) < 2:
            continue
        generated, blocks = {}, []  # key -> kernel rendered whole; (source, name) of block epilogues
        for key, kernel in todo.items():
            parts = _claim_parts(dev, kernel)
            if parts is None:
                generated[key] = kernel
            elif parts[0][1] is None:
                _programs[("claim",) + key] = (parts[1], (1,), None)
            else:
                (pattern, rest), _ = parts
                if _key(dev, rest) not in _programs:
                    generated[_key(dev, rest)] = rest
                r = _render_block(dev, pattern, rest)
                if r is not None:
                    blocks.append((r.source, r.name))
        keys = list(generated)
        rendered = [_render(dev, generated[k]) for k in keys]
        progs = dev.compile_many([(r.source, r.name) for r in rendered] + blocks)  # blocks: device-cached
        for key, r, prog in zip(keys, rendered, progs):
            _programs[key] = (prog, r.global_size, r.local_size)


def _to_host(node: LazyBuffer) -> np.ndarray:
    host = np.empty(node.shape, dtype=node.dtype.np)
    get_device(node.device).copyout(host, node.buffer.handle)
    return host


def _run_item(it: ScheduleItem) -> None:
    out = it.out
    dev = get_device(out.device)
    buf = DeviceBuffer(dev, out.numel * out.dtype.itemsize)
    timing = debug.timing  # profiling: synchronize around each launch so its time is real
    if timing:
        dev.synchronize()
        t0 = time.perf_counter()
    if it.kernel is None:  # COPY: through host memory; devices need no peer transfers
        src = it.inputs[0]
        dev.copyin(buf.handle, np.ascontiguousarray(_to_host(src)))
        if timing:
            dev.synchronize()
            debug.record(debug.Event("copy", f"copy {src.device}->{dev.name}", dev.name, time.perf_counter() - t0,
                                     nbytes=out.numel * out.dtype.itemsize))
    else:
        n_programs = len(_programs)
        prog, global_size, local_size = _program(dev, it.kernel)
        if timing:
            t1 = time.perf_counter()
            if len(_programs) > n_programs:  # compiled here, not in _precompile
                debug.record(debug.Event("compile", it.kernel.name, dev.name, t1 - t0))
        dev.launch(prog, [buf.handle] + [i.buffer.handle for i in it.inputs], global_size, local_size)
        debug.count_kernel()
        lvl = debug.level()
        if timing:
            dev.synchronize()
            ev = debug.Event("kernel", it.kernel.name, dev.name, time.perf_counter() - t1, flops(it.kernel),
                             bytes_moved(it.kernel))
            debug.record(ev)
        if lvl >= 1:
            debug.log(debug.kernel_line(ev, len(it.inputs)) if lvl >= 2 else
                      f"[{dev.name}] {it.kernel.name} <- {len(it.inputs)} inputs")
            if lvl >= 4:
                debug.log(it.kernel.ast.pretty(2))
    out.buffer = buf
    out.op, out.src, out.arg = Op.BUFFER, (), None


def resolve(device: str, kernel) -> tuple:
    """(device, program, global size, local size) that runs `kernel` on `device` now."""
    dev = get_device(device)
    return (dev,) + tuple(_program(dev, kernel))


def launch_resolved(resolved: tuple, out: LazyBuffer, inputs: list) -> None:
    """_run_item for a program resolved before (luban.jit's replay): no lookups, no
    timing or logging (the caller takes _run_item while either is on)."""
    dev, prog, global_size, local_size = resolved
    buf = DeviceBuffer(dev, out.numel * out.dtype.itemsize)
    dev.launch(prog, [buf.handle] + [i.buffer.handle for i in inputs], global_size, local_size)
    debug.count_kernel()
    out.buffer = buf
    out.op, out.src, out.arg = Op.BUFFER, (), None


# luban.jit's capture hook: sees every schedule, upload and host read while it records
_recorder = None


def realize(targets: list[LazyBuffer]) -> None:
    targets = [t for t in targets if t.buffer is None]
    if not targets:
        return
    items = schedule_cache.schedule(targets)  # a recurring graph skips planning and lowering
    if _recorder is not None:
        _recorder.on_items(items)
    _precompile(items)
    for it in items:
        _run_item(it)


def to_numpy(node: LazyBuffer) -> np.ndarray:
    realize([node])
    if _recorder is not None:
        _recorder.on_host_read(node)
    return _to_host(node)


def from_numpy(arr: np.ndarray, dtype, device: str) -> LazyBuffer:
    arr = np.ascontiguousarray(arr, dtype=dtype.np).reshape(np.shape(arr))  # keeps 0-d as 0-d
    dev = get_device(device)
    if dtype not in dev.dtypes:
        _check_claimed(dev, [dtype])
    buf = DeviceBuffer(dev, arr.nbytes)
    dev.copyin(buf.handle, arr)
    node = LazyBuffer.from_buffer(buf, dtype, arr.shape, device)
    if _recorder is not None:
        _recorder.on_upload(node, arr)
    return node
