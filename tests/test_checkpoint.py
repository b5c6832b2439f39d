"""luban.io checkpoints: round trips, corruption detection, atomic writes, safetensors interop."""
import json
import math
import os
import struct

import ml_dtypes
import numpy as np
import pytest

import luban
from luban import dtypes
from luban.io import CheckpointError, load, save
from luban.nn import Module, Parameter

safetensors_numpy = pytest.importorskip("safetensors.numpy")


def sample(d, shape=(2, 3)):
    rng = np.random.default_rng(0)
    if d.is_bool:
        a = rng.random(shape) > 0.5
    elif d.is_int:
        info = np.iinfo(d.np)
        a = rng.integers(info.min, info.max, size=shape, endpoint=True)
    else:
        a = rng.standard_normal(shape) * 100
    return a.astype(d.np)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("d", dtypes.ALL, ids=lambda d: d.name)
def test_every_dtype_round_trips(tmp_path, d):
    t = luban.tensor(sample(d), dtype=d)
    save(t, tmp_path / "t.safetensors")
    back = load(tmp_path / "t.safetensors")
    assert back.dtype == d and same(back.numpy(), t.numpy())
    empty = luban.tensor(np.zeros((0, 3), d.np), dtype=d)
    save({"e": empty}, tmp_path / "e.safetensors")
    assert tuple(load(tmp_path / "e.safetensors")["e"].shape) == (0, 3)


def test_bfloat16_special_values(tmp_path):
    a = np.array([0.0, -0.0, 1.5, np.inf, -np.inf, np.nan, 3e38, 1e-40], dtype=ml_dtypes.bfloat16)
    save({"x": luban.tensor(a)}, tmp_path / "b.safetensors")
    assert same(load(tmp_path / "b.safetensors")["x"].numpy(), a)


def test_scalar_tensor(tmp_path):
    save(luban.tensor(2.5), tmp_path / "s.safetensors")
    assert load(tmp_path / "s.safetensors").shape == ()


class Net(Module):
    def __init__(self):
        super().__init__()
        self.weight = Parameter(luban.randn(4, 3))
        self.register_buffer("steps", luban.tensor([7]))


def test_nested_training_state(tmp_path):
    model = Net()
    state = {
        "model": model.state_dict(),
        "optimizer": {"state": {0: {"step": 3, "exp_avg": luban.ones(4, 3).bfloat16()}},
                      "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0], "amsgrad": False,
                                        "name": None}]},
        "epoch": 3, "best": float("inf"), "nan": float("nan"), "tag": "run-1", "rng": luban.get_rng_state(),
        "loader": {"epoch": 1, "batches": 5, "rng": [[1, 2], [3, 4]]}, "mixed": [1, "a", luban.tensor([True])],
        "n": np.int64(5), "odd keys": {1.5: "f", True: "b", None: "n", "a.b": luban.zeros(1)},
        "a": {"b": luban.ones(1)},  # its path "a.b" collides with the key above
    }
    path = tmp_path / "ckpt.safetensors"
    save(state, path)
    back = load(path)
    assert back["epoch"] == 3 and back["best"] == math.inf and math.isnan(back["nan"]) and back["tag"] == "run-1"
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert back["optimizer"]["param_groups"][0]["name"] is None and back["loader"] == state["loader"]
    assert back["optimizer"]["state"][0]["step"] == 3
    assert back["optimizer"]["state"][0]["exp_avg"].dtype == luban.bfloat16
    assert isinstance(back["rng"], np.ndarray) and (back["rng"] == state["rng"]).all()
    assert back["mixed"][:2] == [1, "a"] and back["mixed"][2].numpy().tolist() == [True]
    assert back["n"] == 5 and back["odd keys"][1.5] == "f" and back["odd keys"][True] == "b"
    assert back["odd keys"]["a.b"].numpy().tolist() == [0.0] and back["a"]["b"].numpy().tolist() == [1.0]
    fresh = Net()
    fresh.load_state_dict(back["model"])
    assert same(fresh.weight.numpy(), model.weight.numpy()) and fresh.steps.numpy().tolist() == [7]
    names = safetensors_numpy.load_file(path).keys()
    assert {"model.weight", "model.steps", "optimizer.state.0.exp_avg"} <= set(names)


def test_requires_grad_and_map_location(tmp_path):
    t = luban.ones(2).requires_grad_()
    save({"t": t}, tmp_path / "g.safetensors")
    back = load(tmp_path / "g.safetensors", map_location="numpy")["t"]
    assert back.requires_grad and back.device == "numpy"


def test_unsupported_object(tmp_path):
    with pytest.raises(TypeError, match=r"set at model\.x"):
        save({"model": {"x": {1, 2}}}, tmp_path / "bad.safetensors")
    assert not os.listdir(tmp_path)


# ---- corruption -----------------------------------------------------------------------------

@pytest.fixture
def written(tmp_path):
    path = tmp_path / "c.safetensors"
    save({"w": luban.arange(64).float(), "epoch": 3}, path)
    return path, path.read_bytes()


def data_start(raw: bytes) -> int:
    return 8 + struct.unpack("<Q", raw[:8])[0]


@pytest.mark.parametrize("cut", [3, 20, -1, -100])
def test_truncated_file(written, cut):
    path, raw = written
    path.write_bytes(raw[:cut])
    with pytest.raises(CheckpointError, match="c.safetensors") as info:
        load(path)
    assert any(w in str(info.value) for w in ("too short", "truncated"))


def test_flipped_data_byte(written):
    path, raw = written
    raw = bytearray(raw)
    raw[data_start(raw) + 37] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load(path)


def test_edited_header(written):
    path, raw = written
    path.write_bytes(raw.replace(b'\\"epoch\\",3]', b'\\"epoch\\",7]'))  # still valid JSON
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load(path)
    path.write_bytes(raw.replace(b'"F32"', b'"I32"'))  # same size, other dtype
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load(path)
    path.write_bytes(raw[:8] + b"<" + raw[9:])
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load(path)
    path.write_bytes(raw.replace(b'"data_offsets"', b'"data_offsetz"'))
    with pytest.raises(CheckpointError, match="malformed header entry for tensor 'w'"):
        load(path)


# ---- atomic writes --------------------------------------------------------------------------

@pytest.mark.parametrize("fail_in", ["replace", "fsync"])
def test_crash_mid_write_keeps_old_file(tmp_path, monkeypatch, fail_in):
    path = tmp_path / "ckpt.safetensors"
    save({"v": luban.ones(3)}, path)

    def crash(*args):
        raise OSError("simulated crash")
    monkeypatch.setattr(os, fail_in, crash)
    with pytest.raises(OSError, match="simulated crash"):
        save({"v": luban.zeros(3)}, path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["ckpt.safetensors"]  # no temporary file left behind
    assert load(path)["v"].numpy().tolist() == [1.0, 1.0, 1.0]
    save({"v": luban.zeros(3)}, path)
    assert load(path)["v"].numpy().tolist() == [0.0, 0.0, 0.0]


# ---- interoperability -----------------------------------------------------------------------

def test_read_by_safetensors(tmp_path):
    arrays = {d.name: sample(d) for d in dtypes.ALL}
    save({k: luban.tensor(a, dtype=dtypes.get_dtype(k)) for k, a in arrays.items()}, tmp_path / "l.safetensors")
    got = safetensors_numpy.load_file(tmp_path / "l.safetensors")  # BF16 comes back as ml_dtypes.bfloat16
    assert set(got) == set(arrays) and all(same(got[k], a) for k, a in arrays.items())


def test_read_plain_safetensors(tmp_path):
    arrays = {f"layer.{d.name}": sample(d) for d in dtypes.ALL}
    safetensors_numpy.save_file(arrays, tmp_path / "p.safetensors", metadata={"format": "np"})
    back = load(tmp_path / "p.safetensors", map_location="numpy")
    assert set(back) == set(arrays) and all(same(back[k].numpy(), a) for k, a in arrays.items())
    assert back["layer.bfloat16"].dtype == luban.bfloat16 and back["layer.bfloat16"].device == "numpy"


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(struct.pack("<Q", 2) + b"[]")
    with pytest.raises(CheckpointError, match="not a JSON object"):
        load(path)
    header = json.dumps({"t": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(12))
    with pytest.raises(CheckpointError, match="does not fit"):
        load(path)
