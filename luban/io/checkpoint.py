"""save / load: checkpoints in the safetensors format, written atomically and verified.

A safetensors file is an 8-byte little-endian header length, a JSON header mapping each
tensor name to {dtype, shape, data_offsets}, plus "__metadata__" (str -> str), then the
raw little-endian data. luban adds three metadata entries:

  luban.format  "1"
  luban.tree    the saved object as JSON, each tensor replaced by a reference to its name
  luban.sha256  digest of the tensor index, the tree and the data section

Loading parses JSON and copies bytes; nothing is unpickled, so a file cannot run code.
Tensor names are the object's key paths ("model.fc.weight"), so other tools reading
the file see an ordinary flat state dict.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
import struct
from collections.abc import Mapping

import numpy as np

from .. import dtypes
from ..runtime import available_devices, canonical_device
from ..tensor import Tensor

_CODES = {dtypes.bool_: "BOOL", dtypes.uint8: "U8", dtypes.int8: "I8", dtypes.int16: "I16", dtypes.uint16: "U16",
          dtypes.int32: "I32", dtypes.uint32: "U32", dtypes.int64: "I64", dtypes.float16: "F16",
          dtypes.bfloat16: "BF16", dtypes.float32: "F32", dtypes.float64: "F64"}
_BY_CODE = {code: d for d, code in _CODES.items()}
_MAX_HEADER = 100_000_000  # the limit the safetensors reference implementation enforces
_FORMAT = "1"


class CheckpointError(RuntimeError):
    """A checkpoint file is unreadable, truncated or corrupted."""


# ---- object tree <-> JSON -------------------------------------------------------------------
# Plain JSON values stand for themselves; every JSON object is a tag ({"tensor"}, {"ndarray"},
# {"tuple"}, {"dict"}), so user data can never be mistaken for a tag.

def _encode(obj, path: str, arrays: dict):
    where = path or "the top level"
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (Tensor, np.ndarray)):
        arr = obj.numpy() if isinstance(obj, Tensor) else obj
        try:
            dtypes.get_dtype(arr.dtype)
        except TypeError as e:
            raise TypeError(f"luban.save: can't store the array at {where}: {e}") from None
        name = path or "tensor"
        while name in arrays or name == "__metadata__":  # paths can collide: "a.b" vs {"a": {"b"}}
            name += "#"
        arrays[name] = np.ascontiguousarray(arr).reshape(arr.shape)  # ascontiguousarray makes 0-d arrays 1-d
        if isinstance(obj, np.ndarray):
            return {"ndarray": name}
        return {"tensor": name, "device": obj.device, "requires_grad": obj.requires_grad}
    if isinstance(obj, list):
        return [_encode(v, f"{path}.{i}" if path else str(i), arrays) for i, v in enumerate(obj)]
    if isinstance(obj, tuple):
        return {"tuple": [_encode(v, f"{path}.{i}" if path else str(i), arrays) for i, v in enumerate(obj)]}
    if isinstance(obj, Mapping):
        items = []
        for k, v in obj.items():
            if not (k is None or isinstance(k, (bool, int, float, str))):
                raise TypeError(f"luban.save: dict key {k!r} at {where} is a {type(k).__name__}; "
                                f"keys must be str, int, float, bool or None")
            items.append([k, _encode(v, f"{path}.{k}" if path else str(k), arrays)])
        return {"dict": items}
    raise TypeError(f"luban.save: can't store a {type(obj).__name__} at {where}; a checkpoint holds Tensors, "
                    f"NumPy arrays, numbers, strings, bools, None, and lists, tuples and dicts of them")


def _decode(node, arrays: dict, map_location):
    if isinstance(node, list):
        return [_decode(v, arrays, map_location) for v in node]
    if not isinstance(node, dict):
        return node
    if "tensor" in node:
        t = Tensor(arrays[node["tensor"]], device=_device(node["device"], map_location))
        return t.requires_grad_() if node["requires_grad"] else t
    if "ndarray" in node:
        return arrays[node["ndarray"]].copy()  # writable, independent of the file buffer
    if "tuple" in node:
        return tuple(_decode(v, arrays, map_location) for v in node["tuple"])
    return {k: _decode(v, arrays, map_location) for k, v in node["dict"]}


def _device(saved: str, map_location) -> str:
    if map_location is not None:
        return canonical_device(map_location)
    if saved.split(":")[0] not in available_devices():
        raise CheckpointError(f"luban.load: a tensor was saved on device {saved!r}, which is not available here "
                              f"(available: {available_devices()}); pass map_location, e.g. map_location='cpu'")
    return saved


def _digest(index: dict, tree: str, data_chunks) -> str:
    h = hashlib.sha256(json.dumps({"index": index, "tree": tree}, sort_keys=True, separators=(",", ":")).encode())
    for chunk in data_chunks:
        h.update(chunk)
    return h.hexdigest()


# ---- save ------------------------------------------------------------------------------------

def _bytes(arr: np.ndarray) -> np.ndarray:
    return arr.reshape(-1).view(np.uint8)


def save(obj, path) -> None:
    """Write `obj` (a Tensor, a state dict, or nested dicts/lists/tuples of tensors and
    plain values) to `path` atomically: a crash leaves either the old file or the new one."""
    arrays: dict = {}
    tree = json.dumps(_encode(obj, "", arrays), separators=(",", ":"))
    # largest items first: every tensor then starts at a multiple of its item size
    names = sorted(arrays, key=lambda n: -arrays[n].dtype.itemsize)
    index, offset = {}, 0
    for name in names:
        a = arrays[name]
        index[name] = {"dtype": _CODES[dtypes.get_dtype(a.dtype)], "shape": list(a.shape),
                       "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    chunks = [_bytes(arrays[n]) for n in names]
    meta = {"luban.format": _FORMAT, "luban.tree": tree, "luban.sha256": _digest(index, tree, chunks)}
    header = json.dumps({"__metadata__": meta, **index}, separators=(",", ":")).encode()
    header += b" " * (-(8 + len(header)) % 8)  # the data section starts 8-byte aligned
    _atomic_write(os.fspath(path), [struct.pack("<Q", len(header)), header, *chunks])


def _atomic_write(path: str, chunks) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 & umask, like open()
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dfd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(dfd)  # and the rename itself survives a power cut
    finally:
        os.close(dfd)


# ---- load ------------------------------------------------------------------------------------

def _check_index(header: dict, data_len: int, fail) -> dict:
    entries = []
    for name, e in header.items():
        if not (isinstance(e, dict) and e.get("dtype") in _BY_CODE and isinstance(e.get("shape"), list)
                and all(isinstance(d, int) and d >= 0 for d in e["shape"]) and isinstance(e.get("data_offsets"), list)
                and len(e["data_offsets"]) == 2 and all(isinstance(o, int) for o in e["data_offsets"])):
            fail(f"malformed header entry for tensor {name!r}: {str(e)[:200]}")
        begin, end = e["data_offsets"]
        if end - begin != math.prod(e["shape"]) * _BY_CODE[e["dtype"]].itemsize:
            fail(f"tensor {name!r}: byte range {begin}..{end} does not fit dtype {e['dtype']} and shape {e['shape']}")
        entries.append((begin, end, name))
    pos = 0
    for begin, end, name in sorted(entries):
        if begin != pos:
            fail(f"tensor {name!r} starts at byte {begin} of the data section, expected {pos} (overlap or gap)")
        pos = end
    if pos > data_len:
        fail(f"the file is truncated: its tensors need {pos} bytes of data, only {data_len} are present")
    if pos < data_len:
        fail(f"{data_len - pos} unexpected bytes after the last tensor")
    return header


def load(path, map_location=None):
    """Read a file written by `save` (verifying its checksum), or any safetensors file
    (returned as a flat dict of Tensors). Tensors go to `map_location` if given, else
    to the device they were saved from (plain safetensors files: the default device)."""
    path = os.fspath(path)

    def fail(msg):
        raise CheckpointError(f"luban.load: {path!r}: {msg}")

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            fail(f"the file is too short ({size} bytes) to be a safetensors checkpoint")
        (n,) = struct.unpack("<Q", f.read(8))
        if n > size - 8 or n > _MAX_HEADER:
            fail(f"the header claims {n} bytes but the file has {size} bytes: truncated, or not a safetensors file")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            fail(f"the header is not valid JSON ({e}): corrupted, or not a safetensors file")
        data = f.read()
    if not isinstance(header, dict):
        fail("the header is not a JSON object: corrupted, or not a safetensors file")
    meta = header.pop("__metadata__", None) or {}
    index = _check_index(header, len(data), fail)
    arrays = {name: np.frombuffer(data, dtype=_BY_CODE[e["dtype"]].np, count=math.prod(e["shape"]),
                                  offset=e["data_offsets"][0]).reshape(e["shape"]) for name, e in index.items()}
    if not isinstance(meta, dict) or "luban.tree" not in meta:  # written by another tool
        device = None if map_location is None else canonical_device(map_location)
        return {name: Tensor(a, device=device) for name, a in arrays.items()}
    if meta.get("luban.format") != _FORMAT:
        fail(f"unsupported luban checkpoint format {meta.get('luban.format')!r} (this luban reads {_FORMAT!r})")
    tree = meta["luban.tree"]
    if _digest(index, tree, [data]) != meta.get("luban.sha256"):  # the tensors tile the data section exactly
        fail("checksum mismatch: the file was modified or corrupted after it was written")
    try:
        return _decode(json.loads(tree), arrays, map_location)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        fail(f"the object tree in the metadata is malformed ({type(e).__name__}: {e})")
