"""Data types and PyTorch-style type promotion.

This module, with ``graph/ops.py``, is the vocabulary every layer shares; it imports
nothing from luban.
"""
from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes  # bfloat16 as a real NumPy dtype (the one JAX uses)
import numpy as np


@dataclass(frozen=True, eq=False)
class DType:
    name: str
    itemsize: int
    kind: str  # 'b' bool, 'i' signed int, 'u' unsigned int, 'f' float
    np: np.dtype
    ctype: str  # storage type in generated C-family code (i64: each dialect typedefs it)
    rank: int  # order within a kind for promotion

    @property
    def is_float(self) -> bool:
        return self.kind == "f"

    @property
    def is_int(self) -> bool:
        return self.kind in "iu"

    @property
    def is_bool(self) -> bool:
        return self.kind == "b"

    def __repr__(self) -> str:
        return f"luban.{self.name}"

    def __reduce__(self):  # pickles as a name: DataLoader workers send dtypes
        return (get_dtype, (self.name,))


bool_ = DType("bool", 1, "b", np.dtype(np.bool_), "unsigned char", 0)
uint8 = DType("uint8", 1, "u", np.dtype(np.uint8), "unsigned char", 1)
int8 = DType("int8", 1, "i", np.dtype(np.int8), "signed char", 1)
int16 = DType("int16", 2, "i", np.dtype(np.int16), "short", 2)
uint16 = DType("uint16", 2, "u", np.dtype(np.uint16), "unsigned short", 2)
int32 = DType("int32", 4, "i", np.dtype(np.int32), "int", 3)
uint32 = DType("uint32", 4, "u", np.dtype(np.uint32), "unsigned int", 3)
int64 = DType("int64", 8, "i", np.dtype(np.int64), "i64", 4)
float16 = DType("float16", 2, "f", np.dtype(np.float16), "unsigned short", 1)
bfloat16 = DType("bfloat16", 2, "f", np.dtype(ml_dtypes.bfloat16), "unsigned short", 1)
float32 = DType("float32", 4, "f", np.dtype(np.float32), "float", 2)
float64 = DType("float64", 8, "f", np.dtype(np.float64), "double", 3)

ALL = (bool_, uint8, int8, int16, uint16, int32, uint32, int64, float16, bfloat16, float32, float64)
_BY_NAME = {d.name: d for d in ALL}
_BY_NAME.update({"bool_": bool_, "half": float16, "float": float32, "double": float64,
                 "long": int64, "int": int32, "short": int16})
_BY_NP = {d.np: d for d in ALL}

default_float = float32
default_int = int64


def get_dtype(x) -> DType:
    """Accept a DType, a name ('float32'), a NumPy dtype or a Python type."""
    if isinstance(x, DType):
        return x
    if x is bool:
        return bool_
    if x is int:
        return default_int
    if x is float:
        return default_float
    if isinstance(x, str):
        if x.startswith("luban."):
            x = x[6:]
        if x in _BY_NAME:
            return _BY_NAME[x]
        raise TypeError(f"unknown dtype {x!r}; expected one of {sorted(d.name for d in ALL)}")
    try:
        npd = np.dtype(x)
    except TypeError:
        npd = None
    if npd is not None and npd in _BY_NP:
        return _BY_NP[npd]
    raise TypeError(f"unsupported dtype {x!r}; expected one of {sorted(d.name for d in ALL)}")


_KIND_ORDER = {"b": 0, "u": 1, "i": 1, "f": 2}


def promote(a: DType, b: DType) -> DType:
    """Result dtype of a binary op on two tensors, following torch.promote_types."""
    if a is b:
        return a
    ka, kb = _KIND_ORDER[a.kind], _KIND_ORDER[b.kind]
    if ka != kb:
        return a if ka > kb else b
    if a.is_float:
        if {a, b} == {float16, bfloat16}:
            return float32
        return a if a.rank > b.rank else b
    # integers: uint8 with a signed type needs the next signed size up
    if a.kind == b.kind:
        return a if a.itemsize > b.itemsize else b
    s, u = (a, b) if a.kind == "i" else (b, a)
    if s.itemsize > u.itemsize:
        return s
    return {1: int16, 2: int32, 4: int64}.get(u.itemsize, int64)


def scalar_kind(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "b"
    if isinstance(v, (int, np.integer)):
        return "i"
    if isinstance(v, (float, np.floating)):
        return "f"
    raise TypeError(f"expected a Python number, got {type(v).__name__}")


def promote_with_scalar(t: DType, v) -> DType:
    """A Python scalar only lifts the category (bool < int < float), like PyTorch."""
    k = _KIND_ORDER[scalar_kind(v)]
    if k <= _KIND_ORDER[t.kind]:
        return t
    return default_float if k == 2 else default_int


def min_value(d: DType):
    if d.is_float:
        return -float("inf")
    if d.is_bool:
        return False
    return int(np.iinfo(d.np).min)


def max_value(d: DType):
    if d.is_float:
        return float("inf")
    if d.is_bool:
        return True
    return int(np.iinfo(d.np).max)
