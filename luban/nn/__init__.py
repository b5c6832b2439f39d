"""luban.nn: neural-network building blocks with torch.nn's names and semantics."""
from . import functional, init, utils  # noqa: F401
from .modules import *  # noqa: F401,F403
from .modules import Module, Parameter  # noqa: F401
