"""Runs a schedule: allocate outputs, render and compile kernels (cached in-process by
kernel structure, on disk by the device), launch, and turn nodes into buffers."""
from __future__ import annotations

import importlib
import time

import numpy as np

from .. import debug
from ..graph.lazy import DeviceBuffer, LazyBuffer
from ..graph.ops import Op
from ..runtime import get_device
from .fusion import ScheduleItem, create_schedule

_programs: dict = {}  # (device name, kernel AST, input spec) -> program


def _program(device, kernel):
    key = (device.name, kernel.ast, kernel.inputs)
    prog = _programs.get(key)
    if prog is None:
        renderer = importlib.import_module(f"luban.codegen.{device.renderer}")
        t0 = time.perf_counter()
        rendered = renderer.render(kernel)
        if isinstance(rendered, tuple):
            source, fname = rendered
            if debug.level() >= 3:
                debug.log(source)
            prog = device.compile(source, fname)
        else:
            prog = device.compile(rendered, kernel.name)
        if debug.level() >= 2:
            debug.log(f"  compiled {kernel.name} in {(time.perf_counter() - t0) * 1e3:.1f} ms")
        _programs[key] = prog
    return prog


def _precompile(items: list[ScheduleItem]) -> None:
    """Compile every new kernel of a schedule at once, in parallel where the device can."""
    by_device: dict = {}
    for it in items:
        if it.kernel is None:
            continue
        dev = get_device(it.out.device)
        key = (dev.name, it.kernel.ast, it.kernel.inputs)
        if key not in _programs and hasattr(dev, "compile_many"):
            by_device.setdefault(dev.name, (dev, {}))[1][key] = it.kernel
    for dev, todo in by_device.values():
        if len(todo) < 2:
            continue
        renderer = importlib.import_module(f"luban.codegen.{dev.renderer}")
        keys = list(todo)
        sources = [renderer.render(todo[k]) for k in keys]
        if debug.level() >= 3:
            for src in sources:
                debug.log(src[0] if isinstance(src, tuple) else str(src))
        for key, prog in zip(keys, dev.compile_many(sources)):
            _programs[key] = prog


def _to_host(node: LazyBuffer) -> np.ndarray:
    host = np.empty(node.shape, dtype=node.dtype.np)
    get_device(node.device).copyout(host, node.buffer.handle)
    return host


def _run_item(it: ScheduleItem) -> None:
    out = it.out
    dev = get_device(out.device)
    buf = DeviceBuffer(dev, out.numel * out.dtype.itemsize)
    if it.kernel is None:  # COPY: through host memory; devices need no peer transfers
        src = it.inputs[0]
        dev.copyin(buf.handle, np.ascontiguousarray(_to_host(src)))
    else:
        prog = _program(dev, it.kernel)
        t0 = time.perf_counter() if debug.level() >= 2 else 0.0
        dev.launch(prog, [buf.handle] + [i.buffer.handle for i in it.inputs])
        debug.count_kernel()
        lvl = debug.level()
        if lvl >= 1:
            msg = f"[{dev.name}] {it.kernel.name} <- {len(it.inputs)} inputs"
            if lvl >= 2:
                dev.synchronize()
                msg += f"  {(time.perf_counter() - t0) * 1e6:.0f} us"
            debug.log(msg)
            if lvl >= 4:
                debug.log(it.kernel.ast.pretty(2))
    out.buffer = buf
    out.op, out.src, out.arg = Op.BUFFER, (), None


def realize(targets: list[LazyBuffer]) -> None:
    targets = [t for t in targets if t.buffer is None]
    if not targets:
        return
    items = create_schedule(targets)
    _precompile(items)
    for it in items:
        _run_item(it)


def to_numpy(node: LazyBuffer) -> np.ndarray:
    realize([node])
    return _to_host(node)


def from_numpy(arr: np.ndarray, dtype, device: str) -> LazyBuffer:
    arr = np.ascontiguousarray(arr, dtype=dtype.np).reshape(np.shape(arr))  # keeps 0-d as 0-d
    dev = get_device(device)
    buf = DeviceBuffer(dev, arr.nbytes)
    dev.copyin(buf.handle, arr)
    return LazyBuffer.from_buffer(buf, dtype, arr.shape, device)
