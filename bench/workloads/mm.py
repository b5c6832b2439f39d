"""MM: 1024x1024x1024 float32 matmul."""
import numpy as np

from .adapter import Workload

NAME, DESC = "MM", "1024^3 fp32 matmul (GFLOP/s)"
N = 1024


def build(fw, quick=False):
    rng = np.random.default_rng(0)
    a = fw.tensor(rng.standard_normal((N, N), dtype=np.float32))
    b = fw.tensor(rng.standard_normal((N, N), dtype=np.float32))
    if fw.name == "luban":
        step = lambda: (a @ b).realize()
    else:
        step = fw.compile(lambda: a @ b)
    return Workload(step, "gflops", flops=2.0 * N ** 3)
