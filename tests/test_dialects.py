"""The C-family renderer's dialects: what each one emits, and that the OpenCL dialect's
two ways of sharing work (item per output, group per output) compute the reference's
values on the opencl device."""
from __future__ import annotations

import numpy as np
import pytest

from luban import dtypes as D
from luban.codegen import c, numpy_interp, opencl
from luban.codegen.kernel import Kernel, KNode
from luban.graph.ops import Op
from luban.runtime import get_device, usable_devices

F32 = D.float32
LOCAL = {"float64": True, "local_memory": 65536, "max_local_size": 1024}


def _load(shape, dt=F32):
    return KNode(Op.LOAD, (), 0, dt, shape)


def _sum(x, axes, dt=F32):
    shape = tuple(1 if k in axes else n for k, n in enumerate(x.shape))
    return KNode(Op.SUM, (x,), axes, dt, shape)


def _softmax_denominator(n):
    """sum(exp2(x - max(x))) over a row: two reduces, one inside the other's loop."""
    x = _load((2, n))
    m = KNode(Op.EXPAND, (KNode(Op.RMAX, (x,), (1,), F32, (2, 1)),), (2, n), F32, (2, n))
    d = KNode(Op.ADD, (x, KNode(Op.NEG, (m,), None, F32, (2, n))), None, F32, (2, n))
    return Kernel(_sum(KNode(Op.EXP2, (d,), None, F32, (2, n)), (1,)), ((F32, (2, n)),), "softmax_den")


def test_long_reduce_uses_a_work_group_and_local_memory():
    k = Kernel(_sum(_load((5000,)), (0,)), ((F32, (5000,)),), "total")
    r = opencl.render(k, LOCAL)
    assert "__local double" in r.source and "barrier(CLK_LOCAL_MEM_FENCE);" in r.source
    assert r.local_size == (256,) and r.global_size == (256,)  # one group for the one output


def test_without_local_memory_or_float64_one_item_per_output_in_float():
    k = Kernel(_sum(_load((3, 5000)), (1,)), ((F32, (3, 5000)),), "rows")
    r = opencl.render(k, {"float64": False})
    assert "__local" not in r.source and "barrier" not in r.source and "double" not in r.source.split("void rows")[1]
    assert r.local_size is None and r.global_size == (3,)
    assert "if (gid >= 3) return;" in r.source


def test_c_dialect_is_loops_with_openmp_and_no_opencl_qualifiers():
    src = c.render(Kernel(_sum(_load((64, 5000)), (1,)), ((F32, (64, 5000)),), "rows")).source
    assert "#pragma omp parallel for" in src and "__kernel" not in src and "__global" not in src
    assert "get_global_id" not in src


needs_opencl = pytest.mark.skipif("opencl" not in usable_devices(), reason="no OpenCL platform here "
                                  "(CI installs PoCL and requires the opencl device)")


@needs_opencl
@pytest.mark.parametrize("kernel", [
    Kernel(_sum(_load((5000,)), (0,)), ((F32, (5000,)),), "total"),
    Kernel(_sum(_load((3, 7, 700)), (0, 2)), ((F32, (3, 7, 700)),), "two_axes"),
    _softmax_denominator(3000),
    _softmax_denominator(10),
], ids=["total", "two_axes", "softmax_long", "softmax_short"])
@pytest.mark.parametrize("caps", [LOCAL, {"float64": False}], ids=["groups", "items"])
def test_opencl_kernels_match_the_reference(kernel, caps):
    dev = get_device("opencl")
    (dt, shape), = kernel.inputs
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    r = opencl.render(kernel, caps)
    out, inp = dev.alloc(4 * int(np.prod(kernel.shape))), dev.alloc(x.nbytes)
    dev.copyin(inp, x)
    dev.launch(dev.compile(r.source, r.name), [out, inp], r.global_size, r.local_size)
    got = np.empty(kernel.shape, np.float32)
    dev.copyout(got, out)
    want = np.empty(kernel.shape, np.float32)
    numpy_interp.render(kernel).source([want.reshape(-1).view(np.uint8), x.reshape(-1).view(np.uint8)])
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5)
