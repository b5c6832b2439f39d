"""C with OpenMP for the `cpu` device: the C-family renderer (cstyle.py) with loops
shared by `omp parallel for` and inner loops marked `omp simd`."""
from __future__ import annotations

from .cstyle import Dialect
from .cstyle import render as render_cstyle
from .cstyle import render_block as render_block_cstyle
from .kernel import Kernel, Rendered

PRELUDE = r"""#include <math.h>
#include <string.h>
#include <limits.h>
typedef long long i64;
typedef unsigned long long u64;
typedef double F2I_T;
#define I64_MIN LLONG_MIN
#define HAS_F64 1
#ifdef LUBAN_LIBMVEC
/* glibc's vector math (libmvec, <= 4 ulp), so loops that call these vectorize: declared
   as math.h would under -ffast-math, which luban avoids for its other effects; the cpu
   device defines LUBAN_LIBMVEC where the compiler links libmvec */
extern float log2f(float) __attribute__((simd("notinbranch")));
extern float sinf(float) __attribute__((simd("notinbranch")));
extern double exp2(double) __attribute__((simd("notinbranch")));
extern double log2(double) __attribute__((simd("notinbranch")));
extern double sin(double) __attribute__((simd("notinbranch")));
#endif
static inline float u2f(unsigned int u) { float f; memcpy(&f, &u, 4); return f; }
static inline unsigned int f2u(float f) { unsigned int u; memcpy(&u, &f, 4); return u; }
/* 2^x for float, inline: a loop calling it vectorizes into ~20 vector instructions a
   lane group and no call (libmvec's exp2f is a call that spills every vector register,
   and goes lane by lane where any lane is below -126: softmax kernels ran 2x slower).
   x = n + f, |f| <= 1/2; 2^f by a degree-6 minimax polynomial (relative error 2e-9,
   fused multiply-adds where the target has them); 2^n applied as two power-of-two
   factors, so a subnormal result rounds once. Within 1 ulp of exp2 over all floats;
   nan stays nan, -inf gives 0, +inf inf. */
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
#define LUBAN_MADF(a, b, c) __builtin_fmaf(a, b, c)
#else
#define LUBAN_MADF(a, b, c) ((a) * (b) + (c))
#endif
static inline float luban_exp2f(float x) {
  float c = x < -151.0f ? -151.0f : x > 129.0f ? 129.0f : x;
  float n = __builtin_floorf(c + 0.5f), f = c - n;
  float p = 0x1.41fbbcp-13f;
  p = LUBAN_MADF(p, f, 0x1.5f3e54p-10f);
  p = LUBAN_MADF(p, f, 0x1.3b2d4cp-7f);
  p = LUBAN_MADF(p, f, 0x1.c6aee8p-5f);
  p = LUBAN_MADF(p, f, 0x1.ebfbdcp-3f);
  p = LUBAN_MADF(p, f, 0x1.62e430p-1f);
  p = LUBAN_MADF(p, f, 1.0f);
  int e = (int)n, e1 = e >> 1, e2 = e - e1;
  float r = p * u2f((unsigned int)(e1 + 127) << 23) * u2f((unsigned int)(e2 + 127) << 23);
  return x != x ? x : r;
}
#define exp2f luban_exp2f
"""

C = Dialect(prelude=PRELUDE, err_store="__atomic_store_n(err, 1, __ATOMIC_RELAXED);",
            parallel_pragma="#pragma omp parallel for", simd_pragma="#pragma omp simd",
            keep_loop_pragma="#pragma GCC unroll 1", array_attr=" __attribute__((aligned(64)))")


def render(kernel: Kernel, caps: dict | None = None) -> Rendered:
    return render_cstyle(kernel, C, caps)


def render_block(kernel: Kernel, rows: int, cols: int, caps: dict | None = None) -> Rendered | None:
    """The kernel over one block of its (rows, cols) output (see cstyle.render_block)."""
    return render_block_cstyle(kernel, rows, cols, C)
