"""Pooling (torch.nn.functional names), implemented in frontend/windows.py."""
from ...frontend.windows import (adaptive_avg_pool1d, adaptive_avg_pool2d, avg_pool1d, avg_pool2d, avg_pool3d,
                                 max_pool1d, max_pool2d, max_pool3d)

__all__ = ["max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
           "adaptive_avg_pool2d"]
