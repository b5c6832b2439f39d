"""luban.nn: neural-network building blocks (PyTorch's torch.nn)."""
from . import functional  # noqa: F401
