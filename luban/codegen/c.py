"""C with OpenMP for the `cpu` device: the C-family renderer (cstyle.py) with loops
shared by `omp parallel for` and inner loops marked `omp simd`."""
from __future__ import annotations

from .cstyle import Dialect
from .cstyle import render as render_cstyle
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
extern float exp2f(float) __attribute__((simd("notinbranch")));
extern float log2f(float) __attribute__((simd("notinbranch")));
extern float sinf(float) __attribute__((simd("notinbranch")));
extern double exp2(double) __attribute__((simd("notinbranch")));
extern double log2(double) __attribute__((simd("notinbranch")));
extern double sin(double) __attribute__((simd("notinbranch")));
#endif
static inline float u2f(unsigned int u) { float f; memcpy(&f, &u, 4); return f; }
static inline unsigned int f2u(float f) { unsigned int u; memcpy(&u, &f, 4); return u; }
#ifdef LUBAN_LIBMVEC
/* libmvec's exp2f computes a vector holding any lane below -126 (a masked score's -inf,
   an underflowing exp) lane by lane, 10-30x slower. Such lanes are given +0, or x + 64
   for a subnormal result scaled back after; the argument is picked on x's bits and the
   result on float compares, so the compiler cannot merge the two picks into exp2f(x) */
static inline float luban_exp2f(float x) {
  unsigned int b = f2u(x);
  unsigned int ok = b <= 0xc2fc0000u ? ~0u : 0u;           /* x >= -126 (or a +nan) */
  unsigned int sub = (b <= 0xc3160000u ? ~0u : 0u) & ~ok;   /* -150 <= x < -126 */
  float y = exp2f(u2f((b & ok) | (f2u(x + 64.0f) & sub)));
  return x >= -126.0f ? y : x >= -150.0f ? y * 0x1p-64f : x != x ? x : 0.0f;
}
#define exp2f luban_exp2f
#endif
"""

C = Dialect(prelude=PRELUDE, err_store="__atomic_store_n(err, 1, __ATOMIC_RELAXED);",
            parallel_pragma="#pragma omp parallel for", simd_pragma="#pragma omp simd")


def render(kernel: Kernel, caps: dict | None = None) -> Rendered:
    return render_cstyle(kernel, C, caps)
