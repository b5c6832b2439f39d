"""OpenCL C for the `opencl` device: the C-family renderer (cstyle.py) with one
work-item per output element, or one work-group per output element for long reduces,
combining partial results in __local memory."""
from __future__ import annotations

from .cstyle import Dialect
from .cstyle import render as render_cstyle
from .kernel import Kernel, Rendered

PRELUDE = r"""#pragma OPENCL FP_CONTRACT OFF
#ifdef cl_khr_fp64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#define HAS_F64 1
typedef double F2I_T;
#else
#define HAS_F64 0
typedef float F2I_T;
#endif
typedef long i64;
typedef ulong u64;
#define I64_MIN LONG_MIN
static inline float u2f(uint u) { return as_float(u); }
static inline uint f2u(float f) { return as_uint(f); }
"""

OPENCL = Dialect(prelude=PRELUDE, kernel="__kernel", buffer="__global ", float_suffix="",
                 global_id="get_global_id(0)", group_id="get_group_id(0)", local_id="get_local_id(0)",
                 local="__local", barrier="barrier(CLK_LOCAL_MEM_FENCE);")


def render(kernel: Kernel, caps: dict | None = None) -> Rendered:
    return render_cstyle(kernel, OPENCL, caps)
