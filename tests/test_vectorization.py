"""The C compiler vectorizes the inner loops of luban's cpu kernels, checked with its own
report (luban/runtime/vectorization.py) for the patterns a training step is made of;
and the report tells a vectorized loop from one that is not."""
import numpy as np
import pytest

import luban
import luban.nn.functional as F
from luban.codegen import c
from luban.runtime import compile_cache, vectorization
from luban.runtime.cpu import CPUDevice, compile_flags
from luban.schedule.fusion import create_schedule


def _gcc() -> bool:
    try:
        return "gcc" in compile_cache.compiler_version().lower()
    except compile_cache.CompileError:
        return False


pytestmark = pytest.mark.skipif(not _gcc(), reason="vectorization reports are gcc's (-fopt-info); CC is another compiler")


@pytest.fixture
def cpu():
    luban.set_default_device("cpu")
    yield
    luban.set_default_device(None)


def _t(*shape, seed=0):
    return luban.tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32)).realize()


def _loops(*outs) -> list:
    """(kernel name, loop) for each innermost loop of the cpu kernels computing outs."""
    found = []
    for it in create_schedule([o.lazydata for o in outs]):
        if it.kernel is not None:
            r = c.render(it.kernel, CPUDevice.caps)
            found += [(r.name, loop) for loop in vectorization.report(r.source, compile_flags())]
    assert found, "no kernel to judge"
    return found


def _adamw(p, g, m, v):
    m2 = m * 0.9 + g * 0.1
    v2 = v * 0.999 + g * g * 0.001
    return p * (1 - 1e-3 * 0.01) - 1e-3 * (m2 / 0.1) / ((v2 / 0.001).sqrt() + 1e-8), m2, v2


PATTERNS = {
    "broadcast elementwise": lambda: [(_t(256, 512) * _t(512, seed=1) + _t(256, 1, seed=2)).relu()],
    "gelu (erf, exp)": lambda: [F.gelu(_t(128, 512))],
    "softmax over rows": lambda: [_t(64, 512).softmax(-1)],
    "layer norm": lambda: [F.layer_norm(_t(128, 256), (256,), _t(256, seed=1), _t(256, seed=2))],
    "row and column sums": lambda: [_t(512, 256).sum(1), _t(512, 256, seed=1).sum(0)],
    "batch norm statistics (NCHW)": lambda: [_t(8, 16, 32, 32).mean((0, 2, 3))],
    "AdamW update": lambda: list(_adamw(_t(512, 128), _t(512, 128, seed=1), _t(512, 128, seed=2),
                                        _t(512, 128, seed=3).abs())),
    "cross-entropy": lambda: [F.cross_entropy(_t(256, 100), luban.tensor(np.arange(256) % 100))],
}


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_inner_loops_reading_inputs_vectorize(cpu, pattern):
    loops = _loops(*PATTERNS[pattern]())
    missed = [(name, loop.header, loop.reason) for name, loop in loops if loop.reads_input and not loop.vectorized]
    assert not missed, f"{pattern}: inner loops the compiler did not vectorize: {missed}"
    assert any(loop.reads_input for _, loop in loops)


def test_generated_matmul_vectorizes(cpu):
    """The generated matmul (the path a device without a GEMM claim runs): its inner loop
    along the output's last dim vectorizes."""
    loops = _loops(_t(64, 96) @ _t(96, 80, seed=1))
    hot = [loop for _, loop in loops if loop.reads_input]
    assert hot and all(loop.vectorized for loop in hot), [(loop.header, loop.reason) for loop in hot]


def test_report_tells_a_loop_it_could_not_vectorize():
    """A loop carrying a dependence from one iteration to the next is reported not
    vectorized, with the compiler's reason; the independent loop beside it, vectorized."""
    src = """void k(float* restrict out, const float* restrict in0) {
  for (long i0 = 1; i0 < 4096; i0++) {
    out[i0] = out[i0 - 1] * in0[i0] + 1.0f;
  }
  for (long i1 = 0; i1 < 4096; i1++) {
    out[i1 + 4096] = in0[i1] * 2.0f;
  }
}
"""
    dep, indep = vectorization.report(src, compile_flags())
    assert (dep.line, dep.reads_input, dep.vectorized) == (2, True, False)
    assert dep.reason and dep.reason != vectorization.NO_REPORT
    assert (indep.line, indep.vectorized, indep.reason) == (5, True, "")


def test_innermost_loops_skip_outer_ones():
    src = """void k(float* restrict out, const float* restrict in0) {
  #pragma omp parallel for
  for (long i0 = 0; i0 < 8; i0++) {
    double acc[4];
    for (long i1 = 0; i1 < 4; i1++) {
      acc[i1] = 0;
    }
    #pragma omp simd
    for (long i1 = 0; i1 < 4; i1++) {
      out[i0 * 4 + i1] = in0[i1];
    }
  }
}
"""
    loops = vectorization.innermost_loops(src)
    assert [(lp.line, lp.first, lp.last, lp.reads_input) for lp in loops] == [(5, 5, 7, False), (9, 8, 11, True)]
