"""default_collate / default_convert with torch.utils.data semantics.

Leaves are stacked as NumPy arrays and become one Tensor per batch field, so a batch
costs one host-to-device copy per field however many samples it has.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..tensor import Tensor
from .fetch import make_tensor, map_structure

_ERR = "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}"


def _is_array(x) -> bool:
    # numpy strings and objects are not numbers: torch refuses them too
    return isinstance(x, (np.ndarray, np.generic)) and x.dtype.kind not in "OSUV"


def _stack(batch):
    arrays = [x.numpy() if isinstance(x, Tensor) else np.asarray(x) for x in batch]
    for i, a in enumerate(arrays[1:], 1):
        if a.shape != arrays[0].shape:
            raise RuntimeError(f"default_collate: stack expects each tensor to be equal size, but got "
                               f"{list(arrays[0].shape)} at entry 0 and {list(a.shape)} at entry {i}")
    elem = batch[0]
    return make_tensor(np.stack(arrays), elem.device if isinstance(elem, Tensor) else None)


def default_collate(batch):
    """Stack a list of samples into a batch: Tensors, NumPy arrays and numbers become
    Tensors with a new leading batch dimension (floats -> float64, ints -> int64,
    bools -> bool); dicts, tuples/lists and namedtuples are collated field by field
    (tuples come back as lists, like torch); strings are kept as lists."""
    elem = batch[0]
    if isinstance(elem, Tensor) or _is_array(elem):
        return _stack(batch)
    if isinstance(elem, (np.ndarray, np.generic)):
        raise TypeError(_ERR.format(elem.dtype))
    if isinstance(elem, (bool, int, float)):
        return make_tensor(np.array(batch, dtype=np.float64 if isinstance(elem, float) else None))
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, Mapping):
        fields = {key: default_collate([d[key] for d in batch]) for key in elem}
        try:
            return type(elem)(fields)
        except TypeError:
            return fields
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):
        return type(elem)(*(default_collate(list(s)) for s in zip(*batch)))
    if isinstance(elem, Sequence):
        if any(len(x) != len(elem) for x in batch):
            raise RuntimeError("default_collate: each element in list of batch should be of equal size")
        fields = [default_collate(list(s)) for s in zip(*batch)]
        if isinstance(elem, tuple):
            return fields
        try:
            return type(elem)(fields)
        except TypeError:
            return fields
    raise TypeError(_ERR.format(type(elem)))


def default_convert(data):
    """The collate_fn when batch_size=None: NumPy arrays become Tensors, the rest is kept."""
    return map_structure(lambda x: make_tensor(np.asarray(x)) if _is_array(x) else x, data)
