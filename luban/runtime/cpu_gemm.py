"""luban's own GEMM (float32, float64) for the cpu device's claims: C[cm[i] + cn[j]] = sum over k of
A[am[i] + ak[k]] * B[bk[k] + bn[j]], each operand addressed through offset tables, so a
convolution's windows are read in place (implicit im2col: no gathered matrix).

Why not NumPy's OpenBLAS: its idle threads spin for ~0.1 s after every call and take a
core from the generated OpenMP kernels that follow (measured: a conv GEMM after a BLAS
call ran at half speed; with OPENBLAS_THREAD_TIMEOUT=4 at full), and it needs an
im2col matrix in memory. This kernel (a 16x16 register tile, one zmm FMA per A element
with the broadcast folded in) runs at ~86% of a core's FMA peak.

Blocking as in BLIS: a task owns a block of C; per KC-deep slice it packs its A rows
(MC x KC, in L2; a 16-row panel whose rows are consecutive and lie close together, a
convolution's weight gradient over a channels-last input, or whose rows are equally
spaced and each consecutive along a short K, attention's heads, is read in place
instead) and walks B a 16-column micro-panel at a time (KC x 16, in L1), packed,
or read in place where the panel's 16 columns are consecutive in memory (a convolution's
output row) and its rows not far apart in a batch of small products; a packed B that
several row blocks share is packed once, whole. Tasks are
shared among the OpenMP threads, cut to a multiple of their number where C allows; when
that costs more than it saves (a weight gradient: small C, long K) the threads split K
and add their partial C's."""
from __future__ import annotations

import ctypes
import os
import threading

import numpy as np

from . import compile_cache

_COMMON = r"""
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#ifdef __AVX512F__
#define VBYTES 64
#define MR 16 /* 16 accumulators and B's vector of 32 zmm registers */
#else
#define VBYTES 32
#define MR 12 /* AVX2 (or narrower, split by the compiler): 12 + B + a broadcast of 16 */
#endif
#define KC 256
#define MC (MR * 8) /* rows of A packed at a time (L2), whole panels */
static inline long lmin(long a, long b) { return a < b ? a : b; }
static inline long cdiv(long a, long b) { return (a + b - 1) / b; }
static inline int consecutive(const long *off, long n) {
  for (long i = 1; i < n; i++) if (off[i] != off[0] + i) return 0;
  return 1;
}
typedef struct {
  long M, N, K;
  const long *am, *ak, *bn, *bk, *cm, *cn;
  int far_b; /* a batch whose B rows lie far apart: see luban_gemm */
} problem;
/* an epilogue run on each block of C as it is finished (rows [r0, r1), columns [c0, c1)
   of C, or of C^T where flip is set), while the block is in cache */
typedef void (*epilogue_t)(void *const *args, long r0, long r1, long c0, long c1);
static inline void finished(epilogue_t epi, void *const *args, long flip, long i0, long i1, long j0, long j1) {
  if (!epi) return;
  if (flip) epi(args, j0, j1, i0, i1);
  else epi(args, i0, i1, j0, j1);
}
/* scratch memory of the calling thread, shared out among its OpenMP threads and kept
   between calls: a fresh 128 KB block is an mmap, page faults and an munmap every call
   (measured: ~100 us on a 128x256x256 GEMM). NULL when out of memory. */
static __thread char *scratch_mem[2];
static __thread long scratch_cap[2];
static void *scratch(int slot, long bytes) {
  if (bytes > scratch_cap[slot]) {
    free(scratch_mem[slot]);
    scratch_cap[slot] = (bytes + 4095) / 4096 * 4096;
    scratch_mem[slot] = aligned_alloc(64, scratch_cap[slot]);
    if (!scratch_mem[slot]) scratch_cap[slot] = 0;
  }
  return scratch_mem[slot];
}
static inline long per_thread(long bytes) { return (bytes + 63) / 64 * 64; }
typedef float vf __attribute__((vector_size(VBYTES)));
typedef float vfu __attribute__((vector_size(VBYTES), aligned(4)));
typedef double vd __attribute__((vector_size(VBYTES)));
typedef double vdu __attribute__((vector_size(VBYTES), aligned(8)));
#if VBYTES == 64
typedef int vi __attribute__((vector_size(64)));
/* P[k][16] = src[rows[i] + off + k], k < 16, for 16 rows of 16 floats: a 16x16 transpose in
   registers (4 rounds of swapping off-diagonal blocks), ~4x a scalar transposing copy */
static inline void transpose16(float *restrict P, const float *src, const long *rows, long off) {
  vf r[16];
  for (int i = 0; i < 16; i++) r[i] = *(const vfu *)(src + rows[i] + off);
$ROUNDS  for (int i = 0; i < 16; i++) *(vf *)(P + i * 16) = r[i];
}
#endif
"""

# One instance per element type $T: vectors $V of $NR lanes (VBYTES), unaligned $VU
_TEMPLATE = r"""
/* P[k][w] = src[rows[i] + ks[k]] for i < r (rows r..w-1 zero) */
static void pack_$S($T *restrict P, long w, const $T *src, const long *rows, long r, const long *ks, long kc) {
  if (r == w && w % $NR == 0 && consecutive(rows, w)) {
    const $T *s = src + rows[0];
    for (long k = 0; k < kc; k++)
      for (long v = 0; v < w; v += $NR) *($V *)(P + k * w + v) = *(const $VU *)(s + ks[k] + v);
    return;
  }
  for (long k = 0; k < kc; k += 16) {
    long n = lmin(16, kc - k);
#if VBYTES == 64
    if (sizeof($T) == 4 && w == 16 && r == 16 && n == 16 && consecutive(ks + k, 16)) {
      transpose16((float *)(void *)(P + k * 16), (const float *)(const void *)src, rows, ks[k]);
      continue;
    }
#endif
    for (long i = 0; i < r; i++)
      for (long kk = k; kk < k + n; kk++) P[kk * w + i] = src[rows[i] + ks[kk]];
  }
  for (long i = r; i < w; i++)
    for (long k = 0; k < kc; k++) P[k * w + i] = 0;
}

/* A panel (k-major) x B panel (packed, k-major, or in place at base + ks[k]): into
   X[MR][$NR], or, with c, straight from the registers into rows c + cm[i] (i < mr) of
   $NR consecutive elements (add: added), as most tiles are: no trip through X */
static inline __attribute__((always_inline)) void tile_$S(long kc, const $T *restrict A, const long *aks,
                                                          const $T *restrict B, const $T *base, const long *ks,
                                                          $T *restrict X, $T *c, const long *cm, long mr, int add,
                                                          long lda) {
  $V acc[MR];
  for (int i = 0; i < MR; i++) acc[i] = ($V){0};
  if (lda) /* A's MR rows read in place, lda apart, each consecutive along k */
    for (long k = 0; k < kc; k++) {
      $V b = B ? *(const $V *)(B + k * $NR) : *(const $VU *)(base + ks[k]);
      for (int i = 0; i < MR; i++) acc[i] += A[i * lda + k] * b;
    }
  else if (aks) /* A's MR rows read in place: consecutive, at A + aks[k] (see in_place_a) */
    for (long k = 0; k < kc; k++) {
      $V b = B ? *(const $V *)(B + k * $NR) : *(const $VU *)(base + ks[k]);
      const $T *a = A + aks[k];
      for (int i = 0; i < MR; i++) acc[i] += a[i] * b;
    }
  else if (B)
    for (long k = 0; k < kc; k++) {
      $V b = *(const $V *)(B + k * $NR);
      for (int i = 0; i < MR; i++) acc[i] += A[k * MR + i] * b;
    }
  else
    for (long k = 0; k < kc; k++) {
      $V b = *(const $VU *)(base + ks[k]);
      for (int i = 0; i < MR; i++) acc[i] += A[k * MR + i] * b;
    }
  if (c)
    for (int i = 0; i < MR; i++) {
      if (i < mr) {
        $VU *d = ($VU *)(c + cm[i]);
        *d = add ? *d + acc[i] : acc[i];
      }
    }
  else
    for (int i = 0; i < MR; i++) *($V *)(X + i * $NR) = acc[i];
}

/* tile_$S for a single row of A (a matrix-vector product): one FMA per k, not MR, in
   four independent chains (an FMA's latency) */
static inline void row_$S(long kc, const $T *restrict A, const $T *restrict B, const $T *base, const long *ks,
                          $T *restrict X) {
  $V acc[4] = {{0}, {0}, {0}, {0}};
  long k = 0;
  if (B)
    for (; k + 4 <= kc; k += 4)
      for (int u = 0; u < 4; u++) acc[u] += A[(k + u) * MR] * *(const $V *)(B + (k + u) * $NR);
  else
    for (; k + 4 <= kc; k += 4)
      for (int u = 0; u < 4; u++) acc[u] += A[(k + u) * MR] * *(const $VU *)(base + ks[k + u]);
  for (; k < kc; k++) acc[0] += A[k * MR] * (B ? *(const $V *)(B + k * $NR) : *(const $VU *)(base + ks[k]));
  *($V *)X = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  for (int i = 1; i < MR; i++) *($V *)(X + i * $NR) = ($V){0};  /* rows a dense C adds up too */
}

/* c[cm[i] + cn[j]] (+)= X[i][j] */
static void store_$S($T *c, const long *cm, const long *cn, long mr, long nr, const $T *X, int add) {
  if (nr == $NR && consecutive(cn, $NR)) {
    for (long i = 0; i < mr; i++) {
      $VU *d = ($VU *)(c + cm[i] + cn[0]);
      $V x = *(const $V *)(X + i * $NR);
      *d = add ? *d + x : x;
    }
    return;
  }
  for (long i = 0; i < mr; i++)
    for (long j = 0; j < nr; j++) {
      $T *d = c + cm[i] + cn[j];
      *d = add ? *d + X[i * $NR + j] : X[i * $NR + j];
    }
}

/* how the MR-row panel of A from row i (i1 the block's end), k in [k0, k0 + kc), is
   read: 0 packed; 1 in place, its rows consecutive and spread over at most 4x the
   packed panel's extent (a convolution's weight gradient over a channels-last input:
   the copy into a panel was ~18% of that GEMM); 2 in place, each row consecutive along
   k and the rows equally spaced, for a short K (attention's q, or its probabilities,
   at head size: the transposing copy cost more than the product) */
static inline int in_place_a_$S(const problem *p, long i, long i1, long k0, long kc) {
  if (i1 - i < MR) return 0;
  if (kc <= 64 && consecutive(p->ak + k0, kc)) {
    long lda = p->am[i + 1] - p->am[i];
    int even = lda >= kc || lda <= -kc; /* rows apart: consecutive ones are case 1's */
    for (long r = 2; r < MR && even; r++) even = p->am[i + r] - p->am[i + r - 1] == lda;
    if (even) return 2;
  }
  if (!consecutive(p->am + i, MR)) return 0;
  long lo = p->ak[k0], hi = p->ak[k0];
  for (long k = k0 + 1; k < k0 + kc; k++) {
    lo = p->ak[k] < lo ? p->ak[k] : lo;
    hi = p->ak[k] > hi ? p->ak[k] : hi;
  }
  return hi - lo + MR <= 4 * MR * kc;
}

/* A's rows [i0, i1), k in [k0, k0 + kc), packed panel by panel (MR rows each) into Ap,
   except the panels read in place: ip[panel] says which */
static void pack_a_$S(const problem *p, const $T *a, long i0, long i1, long k0, long kc, $T *Ap, char *ip) {
  for (long ib = 0; ib < cdiv(i1 - i0, MR); ib++) {
    long i = i0 + ib * MR;
    ip[ib] = (char)in_place_a_$S(p, i, i1, k0, kc);
    if (!ip[ib]) pack_$S(Ap + ib * MR * kc, MR, a, p->am + i, lmin(MR, i1 - i), p->ak + k0, kc);
  }
}

/* part `part` of `parts` of the lines B's micro-panel from column jn (nr columns, k in
   [k0, k0 + kc)) is read from: one per k where its columns are consecutive (read in
   place), else each column along k (packed). Issued while the panel before computes, so
   a weight matrix coming from L3 or memory is in L2 when packed (measured: a GEMM inside
   a training step ran 15-20% slower than the same GEMM repeated). */
static inline void prefetch_b_$S(const problem *p, const $T *b, long jn, long nr, long k0, long kc, int direct,
                                 long part, long parts) {
  const long step = 64 / sizeof($T);
  if (direct) {
    for (long k = kc * part / parts; k < kc * (part + 1) / parts; k++) __builtin_prefetch(b + p->bn[jn] + p->bk[k0 + k], 0, 2);
    return;
  }
  long per = cdiv(kc, step), n = nr * per;
  for (long t = n * part / parts; t < n * (part + 1) / parts; t++)
    __builtin_prefetch(b + p->bn[jn + t / per] + p->bk[k0 + t % per * step], 0, 2);
}

/* C rows [i0, i1) x cols [j0, j1) from the A block pack_a_ left (panels packed in Ap, or
   read in place from a where ip says), k in [k0, k0 + kc): stored into c (add: added),
   or, with dense, added into dense (row stride ldd, from row i0, col 0) */
static void cols_$S(const problem *p, $T *c, const $T *b, long i0, long i1, long j0, long j1, long k0, long kc,
                    int add, $T *dense, long ldd, const $T *Ap, const char *ip, const $T *a, $T *Bp,
                    const $T *Bpre) {
  $T X[MR * $NR] __attribute__((aligned(64)));
  for (long j = j0; j < j1; j += $NR) {
    long nr = lmin($NR, j1 - j);
    int direct = !Bpre && nr == $NR && consecutive(p->bn + j, $NR) && !(p->far_b && ip[0] != 1);
    int straight = nr == $NR && consecutive(p->cn + j, $NR);
    if (Bpre) Bp = ($T *)Bpre + (j / $NR * p->K + k0) * $NR;
    else if (!direct) pack_$S(Bp, $NR, b, p->bn + j, nr, p->bk + k0, kc);
    /* only the first row block fetches B from afar: later ones find it in cache */
    long jn = j + $NR, nrn = i0 == 0 && !Bpre ? lmin($NR, j1 - jn) : 0, parts = cdiv(i1 - i0, MR);
    int dn = nrn == $NR && consecutive(p->bn + jn, $NR);
    for (long i = i0; i < i1; i += MR) {
      if (nrn > 0) prefetch_b_$S(p, b, jn, nrn, k0, kc, dn, (i - i0) / MR, parts);
      int in_place = ip[(i - i0) / MR];
      const $T *Ai = in_place == 2 ? a + p->am[i] + p->ak[k0] : in_place ? a + p->am[i] : Ap + (i - i0) * kc;
      /* (ip[] == 2: row r of the panel at Ai + r * lda) */
      const long *aks = in_place == 1 ? p->ak + k0 : 0;
      long lda = in_place == 2 ? p->am[i + 1] - p->am[i] : 0;
      if (i1 - i == 1)
        row_$S(kc, Ai, direct ? 0 : Bp, b + p->bn[j], p->bk + k0, X);
      else if (!dense && straight) {
        tile_$S(kc, Ai, aks, direct ? 0 : Bp, b + p->bn[j], p->bk + k0, X, c + p->cn[j], p->cm + i, lmin(MR, i1 - i),
                add, lda);
        continue;
      } else
        tile_$S(kc, Ai, aks, direct ? 0 : Bp, b + p->bn[j], p->bk + k0, X, 0, 0, 0, 0, lda);
      if (dense)
        for (long r = 0; r < MR; r++) {
          $V *d = ($V *)(dense + (i - i0 + r) * ldd + j);
          *d += *(const $V *)(X + r * $NR);
        }
      else
        store_$S(c, p->cm + i, p->cn + j, lmin(MR, i1 - i), nr, X, add);
    }
  }
}

/* nb problems of one shape, the q-th at element offsets qa[q], qb[q], qc[q]; epi (or
   NULL) is called on each finished block of C (one problem only); bcache (or NULL) is
   {memory for B packed whole (K x 64 bytes per 64 bytes of columns), whether it holds B
   already}: B is packed there once and read from there while the caller says it holds
   (one problem only); returns the bytes of scratch memory it could not allocate (0: done) */
long luban_gemm_$S($T *c, const $T *a, const $T *b, long M, long N, long K, long nb, const long *am, const long *ak,
                   const long *bn, const long *bk, const long *cm, const long *cn, const long *qa, const long *qb,
                   const long *qc, epilogue_t epi, void *const *epi_args, long flip, long *bcache) {
  /* a batch of small products (attention's heads) whose B rows lie far apart (a head of
     a projection's output): a B panel read in place is fetched line by line by each
     row tile; copied into a panel it stays in L1 (measured with A read in place, see
     in_place_a: P V and dS K 10-25% faster, q k^T and dO v^T 5-10%) */
  problem p = {M, N, K, am, ak, bn, bk, cm, cn, nb > 1 && K > 1 && M > MR && labs(bk[1] - bk[0]) >= 4 * $NR};
  if (K == 0) {
    for (long q = 0; q < nb; q++)
      for (long i = 0; i < M; i++)
        for (long j = 0; j < N; j++) c[qc[q] + cm[i] + cn[j]] = 0;
    finished(epi, epi_args, flip, 0, M, 0, N);
    return 0;
  }
  int nt = (double)M * N * K * nb < 65536.0 ? 1 : omp_get_max_threads();
  long npanels = cdiv(N, $NR), rows = lmin(M, MC);
  /* the whole K at once where A's rows fit in L2 (no partial sums through memory) */
  long nkb = cdiv(rows, MR) * MR * K * (long)sizeof($T) <= (256L << 10) && K <= 1024 ? 1 : cdiv(K, KC);
  long kc = cdiv(K, nkb);
  /* tasks: blocks of MC rows x ncols columns of each problem, whole ones to each thread
     (a thread packs its A block itself: read from another core's cache it is slower); C
     is cut along N as far as the threads need and into a multiple of their number where
     it can be: each cut packs A once more */
  long mblocks = cdiv(M, MC), nblocks = lmin(npanels, cdiv(nt, nb * mblocks));
  while (nblocks < npanels && nb * mblocks * nblocks % nt) nblocks++;
  long ncols = cdiv(npanels, nblocks) * $NR, nbl = cdiv(N, ncols), tasks = nb * mblocks * nbl;
  /* few tasks, long K (a weight gradient): the threads split K instead, each into a dense
     C of its own, added up after; where that moves less than the cuts' repacking of A,
     or the tasks do not share out evenly (measured on W3's weight gradients: 512x128 and
     128x512 by 2048 ~5-10% faster cut, 128x128 and 384x128 split) */
  double split_cost = (double)M * N * ((double)K / (KC * nt) + nt + 1), cut_cost = (double)M * K * (nbl - 1);
  if (nt > 1 && nb == 1 && K >= 4L * KC * nt && (double)M * N <= 262144.0 && (tasks % nt || split_cost < cut_cost)) {
    long ldd = npanels * $NR, mrows = cdiv(M, MR) * MR, each = per_thread(sizeof($T) * (mrows + $NR) * KC);
    $T *parts = scratch(1, sizeof($T) * nt * mrows * ldd);
    char *packs = scratch(0, each * nt);
    if (!parts || !packs) return sizeof($T) * nt * mrows * ldd + each * nt;
    _Pragma("omp parallel num_threads(nt)")
    {
      int t = omp_get_thread_num(), n_t = omp_get_num_threads();
      $T *mine = parts + (long)t * mrows * ldd;
      $T *Ap = ($T *)(packs + t * each), *Bp = Ap + mrows * KC;
      memset(mine, 0, sizeof($T) * mrows * ldd);
      long lo = K * t / n_t, hi = K * (t + 1) / n_t;
      char ip[mrows / MR];
      for (long k = lo; k < hi; k += KC) {
        long kk = lmin(KC, hi - k);
        pack_a_$S(&p, a, 0, M, k, kk, Ap, ip);
        cols_$S(&p, c, b, 0, M, 0, N, k, kk, 1, mine, ldd, Ap, ip, a, Bp, 0);
      }
      _Pragma("omp barrier")
      _Pragma("omp for schedule(static)")
      for (long i0 = 0; i0 < M; i0 += MR) {
        for (long i = i0; i < lmin(M, i0 + MR); i++)
          for (long j = 0; j < N; j++) {
            $T s = 0;
            for (int u = 0; u < n_t; u++) s += parts[(long)u * mrows * ldd + i * ldd + j];
            c[qc[0] + cm[i] + cn[j]] = s;
          }
        finished(epi, epi_args, flip, i0, lmin(M, i0 + MR), 0, N);
      }
    }
    return 0;
  }
  long each = per_thread(sizeof($T) * (MC + $NR) * kc);
  char *packs = scratch(0, each * nt);
  if (!packs) return each * nt;
  /* a B that is packed (its columns not consecutive: a Linear's weight, x @ W^T) and
     used by several row blocks is packed once, whole, panel by panel (K x $NR each), not
     once per row block (measured: W3's 2048-row forward GEMMs ran ~10% below the same
     shapes with B read in place) */
  $T *Bpre = 0;
  int pack_b = 0;
  if (nb == 1 && !consecutive(p.bn, lmin($NR, N))) {
    if (bcache) {  /* a B the caller knows unchanged since the last call (a weight, in inference) */
      Bpre = ($T *)bcache[0];
      pack_b = !bcache[1];
    } else if (mblocks > 1 && npanels * K * $NR * (long)sizeof($T) <= (16L << 20)) {
      Bpre = scratch(1, sizeof($T) * npanels * K * $NR);
      pack_b = 1;
    }
  }
  _Pragma("omp parallel num_threads(nt)")
  {
    $T *Ap = ($T *)(packs + omp_get_thread_num() * each), *Bp = Ap + MC * kc;
    if (Bpre && pack_b) {
      _Pragma("omp for schedule(static)")
      for (long j = 0; j < npanels; j++)
        pack_$S(Bpre + j * K * $NR, $NR, b, p.bn + j * $NR, lmin($NR, N - j * $NR), p.bk, K);
    }
    _Pragma("omp for schedule(static)")
    for (long t = 0; t < tasks; t++) {
      long q = t / (mblocks * nbl), i0 = t / nbl % mblocks * MC, j0 = t % nbl * ncols;
      long i1 = lmin(M, i0 + MC), j1 = lmin(N, j0 + ncols);
      char ip[MC / MR];
      for (long k = 0; k < K; k += kc) {
        long kk = lmin(kc, K - k);
        pack_a_$S(&p, a + qa[q], i0, i1, k, kk, Ap, ip);
        cols_$S(&p, c + qc[q], b + qb[q], i0, i1, j0, j1, k, kk, k > 0, 0, 0, Ap, ip, a + qa[q], Bp, Bpre);
      }
      finished(epi, epi_args, flip, i0, i1, j0, j1);
    }
  }
  if (Bpre && bcache) bcache[1] = 1;
  return 0;
}
"""


def _transpose_rounds() -> str:
    """transpose16's four rounds: rows i and i + d (bit d of i clear) swap their
    off-diagonal d x d blocks. Lane e of the new row i is a[e] or, where bit d of e is
    set, b[e - d]; of row i + d, a[e + d] or b[e] (lane 16 + e of a shuffle is b[e])."""
    def mask(d: int, high: bool) -> str:
        return ", ".join(str((16 + e if high else 16 + e - d) if e & d else (e + d if high else e)) for e in range(16))
    return "".join(f"""  for (int i = 0; i < 16; i++)
    if (!(i & {d})) {{
      vf a = r[i], b = r[i + {d}];
      r[i] = __builtin_shuffle(a, b, (vi){{{mask(d, False)}}});
      r[i + {d}] = __builtin_shuffle(a, b, (vi){{{mask(d, True)}}});
    }}
""" for d in (8, 4, 2, 1))


def _instance(t: str, v: str, vu: str, size: int, suffix: str) -> str:
    return _TEMPLATE.replace("$VU", vu).replace("$V", v).replace("$T", t).replace("$NR", f"(VBYTES / {size})") \
        .replace("$S", suffix)


_SOURCE = _COMMON.replace("$ROUNDS", _transpose_rounds()) + _instance("float", "vf", "vfu", 4, "f32") + _instance("double", "vd", "vdu", 8, "f64")

# FMA contraction on (BLAS rounds the same way); the rest as the device's kernels. A
# forked child (a DataLoader worker) runs the GEMM on one thread: GNU OpenMP hangs in a
# child whose parent ran a parallel region (as cpu.py does for the generated kernels).
_EXTRA_FLAGS = ("-ffp-contract=fast",)
_fns: dict = {}
_lock = threading.Lock()


def _gemm_fn(itemsize: int, flags: tuple):
    fns = _fns.get(flags)
    if fns is None:
        with _lock:
            fns = _fns.get(flags)
            if fns is None:
                lib = ctypes.CDLL(str(compile_cache.build(_SOURCE, tuple(flags) + _EXTRA_FLAGS)))
                fns = {}
                for size, suffix in ((4, "f32"), (8, "f64")):
                    fn = getattr(lib, f"luban_gemm_{suffix}")
                    fn.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_long] * 4 + [ctypes.c_void_p] * 11 + \
                        [ctypes.c_long, ctypes.c_void_p]
                    fn.restype = ctypes.c_long
                    fns[size] = (fn, lib)  # lib keeps the shared object loaded
                _fns[flags] = fns  # whole, so the unlocked lookup above never sees half of it
                if len(_fns) == 1:
                    os.register_at_fork(after_in_child=lambda: lib.omp_set_num_threads(1))
    return fns[itemsize][0]


def build(flags: tuple) -> None:
    """Compile (or load from the disk cache) the GEMM library for these flags now."""
    _gemm_fn(4, flags)


def offsets(sizes, strides) -> np.ndarray:
    """The element offsets sum of strides[d] * i_d over the row-major index space `sizes`
    (int64; one 0 for no dims)."""
    off = np.zeros((), np.int64)
    for n, s in zip(sizes, strides):
        off = off[..., None] + np.arange(n, dtype=np.int64) * s
    return np.ascontiguousarray(off.reshape(-1))


class Tables:
    """A problem in offset form: C (M, N) = A (M, K) @ B (K, N), nb times at the offsets
    qa, qb, qc; built once per claimed pattern, run on each launch's pointers."""

    def __init__(self, am, ak, bn, bk, cm, cn, qa=None, qb=None, qc=None):
        zero = np.zeros(1, np.int64)
        self.tables = [np.ascontiguousarray(t, dtype=np.int64) if t is not None else zero
                       for t in (am, ak, bn, bk, cm, cn, qa, qb, qc)]
        self.M, self.K, self.N = len(self.tables[0]), len(self.tables[1]), len(self.tables[2])
        self.nb = len(self.tables[6])
        self._ptrs = [t.ctypes.data for t in self.tables]

        self.swapped = False

    @classmethod
    def oriented(cls, am, ak, bn, bk, cm, cn, qa=None, qb=None, qc=None) -> "Tables":
        """The same problem, as C^T = B^T A^T if that puts C's unit stride along the
        vectors (N): a convolution's output (N, O, H, W) is stored 16 columns at a time and
        its windows become B, read in place (~2x the other way round)."""
        unit = lambda t: len(t) > 1 and t[1] - t[0] == 1
        if unit(cm) and not unit(cn):
            t = cls(bn, bk, am, ak, cn, cm, qb, qa, qc)
            t.swapped = True
            return t
        return cls(am, ak, bn, bk, cm, cn, qa, qb, qc)

    def native(self, itemsize: int, flags: tuple) -> tuple:
        """(the C function's address, its arguments after c, a and b: M, N, K, nb and the
        nine table addresses, as int64) for a caller that calls it from C (cpu_sequence);
        that caller passes A and B swapped where `swapped` is set, then an epilogue (or
        NULL), its arguments, whether it sees C transposed (`swapped`) and a packed-B
        cache (or NULL, see luban_gemm), and treats a nonzero result as run() does. The
        tables must outlive the call (keep self)."""
        fn = _gemm_fn(itemsize, flags)
        return ctypes.cast(fn, ctypes.c_void_p).value, np.array([self.M, self.N, self.K, self.nb] + self._ptrs, np.int64)

    def run(self, c: int, a: int, b: int, itemsize: int, flags: tuple) -> None:
        """C at address c from A at a and B at b (float32 or float64 by itemsize)."""
        if self.swapped:
            a, b = b, a
        if self.M and self.N and self.nb:
            short = _gemm_fn(itemsize, flags)(c, a, b, self.M, self.N, self.K, self.nb, *self._ptrs, None, None, 0,
                                              None)
            if short:
                raise MemoryError(f"luban cpu GEMM ({self.nb}x{self.M}x{self.N}x{self.K}): could not allocate "
                                  f"{short} bytes of packing memory")
