"""luban: a deep learning framework whose every operator is a composition of a small
set of primitives, recorded lazily, fused and compiled for each device.

The public API mirrors PyTorch's names and semantics (`luban.tensor`, `Tensor.backward`,
`luban.no_grad`, ...).
"""
from . import debug, dtypes
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .dtypes import (DType, bfloat16, bool_ as bool, float16, float32, float64, int8, int16, int32,  # noqa: A004
                     int64, uint8)
from .frontend.creation import (arange, as_tensor, empty, empty_like, eye, from_numpy, full, full_like, linspace,
                                ones, ones_like, tensor, where, zeros, zeros_like)
from .frontend.random import (bernoulli, get_rng_state, initial_seed, manual_seed, rand, rand_like, randint,
                              randint_like, randn, randn_like, randperm, set_rng_state)
from .frontend.ops import *  # noqa: F401,F403  (torch-style free functions: cat, stack, matmul, ...)
from .frontend.ops import __all__ as _ops_all
from .runtime import available_devices, default_device, set_default_device
from .tensor import Size, Tensor
from . import data, io, nn, optim  # noqa: E402  (torch-style namespaces: luban.nn, luban.optim, ...)
from .io import load, save  # noqa: E402
from .jit import jit  # noqa: E402  (luban.jit: capture a step's kernels once, replay them)
from .profile import profile  # noqa: E402  (luban.profile(): per-kernel times, like torch.profiler)

half, float, double, long, int, short = float16, float32, float64, int64, int32, int16  # noqa: A001
bool_ = bool
__version__ = "0.1.0"


def get_default_device() -> str:
    return default_device()
