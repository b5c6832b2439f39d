"""Convolutions (torch.nn.functional names). Implemented in frontend/windows.py as
windowed views times the weight, summed."""
from ...frontend.windows import conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d, fold, unfold

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "unfold", "fold"]
