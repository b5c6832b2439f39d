"""The schedule cache: a recurring graph structure reuses its kernels, and no two
different structures ever share an entry (each case checked against NumPy)."""
import numpy as np
import pytest

import luban
from luban.schedule import cache, fusion


@pytest.fixture
def plans(monkeypatch):
    """Counts create_schedule calls (the cache's misses) from a clean cache."""
    cache.clear()
    calls = []
    real = fusion.create_schedule

    def counting(targets, order=None):
        items = real(targets, order)
        calls.append([it.kernel for it in items])
        return items
    monkeypatch.setattr(fusion, "create_schedule", counting)
    yield calls
    cache.clear()


def arr(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def test_same_structure_new_buffers_hits(device, plans):
    rng = np.random.default_rng(0)
    for _ in range(3):
        a, b = arr(rng, (8, 5)), arr(rng, (8, 5))
        out = ((luban.tensor(a) * luban.tensor(b)).sum(1) + 1.5).numpy()
        np.testing.assert_allclose(out, (a * b).sum(1) + 1.5, rtol=1e-5)
    assert len(plans) == 1 and cache.stats["hits"] == 2


@pytest.mark.parametrize("variant", ["shape", "dtype", "constant", "negative zero", "sharing", "targets"])
def test_structure_changes_miss(device, plans, variant):
    rng = np.random.default_rng(1)
    a_np, b_np = arr(rng, (4, 6)), arr(rng, (4, 6))
    a, b = luban.tensor(a_np).realize(), luban.tensor(b_np).realize()
    np.testing.assert_allclose((a * 2.0 + b).numpy(), a_np * 2 + b_np, rtol=1e-6)
    if variant == "shape":
        c_np = arr(rng, (6, 4))
        np.testing.assert_allclose((luban.tensor(c_np) * 2.0 + luban.tensor(c_np + 1)).numpy(),
                                   c_np * 2 + c_np + 1, rtol=1e-6)
    elif variant == "dtype":
        a64, b64 = a_np.astype(np.float64), b_np.astype(np.float64)
        got = (luban.tensor(a64) * 2.0 + luban.tensor(b64)).numpy()
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, a64 * 2 + b64, rtol=1e-12)
    elif variant == "constant":
        np.testing.assert_allclose((a * 3.0 + b).numpy(), a_np * 3 + b_np, rtol=1e-6)
    elif variant == "negative zero":  # 0.0 == -0.0 in Python: the key must still tell them apart
        k_pos = cache.structure_key([(a * 0.0).lazydata])[0]
        k_neg = cache.structure_key([(a * -0.0).lazydata])[0]
        assert k_pos != k_neg
        np.testing.assert_allclose((a * -0.0 + b).numpy(), b_np, rtol=1e-6)
    elif variant == "sharing":  # a*2 + a reads one buffer twice; a*2 + b reads two
        np.testing.assert_allclose((a * 2.0 + a).numpy(), a_np * 3, rtol=1e-6)
        np.testing.assert_allclose((b * 2.0 + a).numpy(), b_np * 2 + a_np, rtol=1e-6)
    elif variant == "targets":  # same graph, a shared intermediate also requested
        mid = a * 2.0
        out = mid + b
        luban.schedule.realize([out.lazydata, mid.lazydata])
        np.testing.assert_allclose(mid.numpy(), a_np * 2, rtol=1e-6)
        np.testing.assert_allclose(out.numpy(), a_np * 2 + b_np, rtol=1e-6)
    assert len(plans) >= 2, "a different structure reused a cached schedule"


def test_negative_zero_keeps_its_sign(device):
    a = luban.tensor(np.ones(3, np.float32))
    assert not np.signbit((a * 0.0).numpy()).any()
    assert np.signbit((a * -0.0).numpy()).all()


def test_shared_vs_separate_subtrees_differ(device, plans):
    """x.sum() used twice (materialized once) vs two separate sums of equal-looking inputs."""
    rng = np.random.default_rng(2)
    x_np, y_np = arr(rng, (5, 7)), arr(rng, (5, 7))
    x, y = luban.tensor(x_np).realize(), luban.tensor(y_np).realize()
    s = x.sum(0)
    np.testing.assert_allclose((s * s + s).numpy(), x_np.sum(0) ** 2 + x_np.sum(0), rtol=1e-4)
    np.testing.assert_allclose((x.sum(0) * y.sum(0) + x.sum(0)).numpy(),
                               x_np.sum(0) * y_np.sum(0) + x_np.sum(0), rtol=1e-4)
    assert len(plans) == 2


def test_max_depth_is_part_of_the_key(device, plans, monkeypatch):
    x_np = arr(np.random.default_rng(3), (3,))
    for depth in (200, 4):
        monkeypatch.setattr(fusion, "MAX_DEPTH", depth)
        x = luban.tensor(x_np)
        for _ in range(10):
            x = x + 1.0
        np.testing.assert_allclose(x.numpy(), x_np + 10, rtol=1e-6)
    assert len(plans) == 2 and len(plans[1]) > len(plans[0])


def test_bounded(device, plans, monkeypatch):
    monkeypatch.setattr(cache, "MAX_ENTRIES", 3)
    for n in range(1, 8):
        x_np = np.arange(n, dtype=np.float32)
        np.testing.assert_allclose((luban.tensor(x_np) * 2.0).numpy(), x_np * 2)
    assert len(cache._entries) == 3
    x_np = np.arange(1, dtype=np.float32)  # evicted: planned again, still right
    np.testing.assert_allclose((luban.tensor(x_np) * 2.0).numpy(), x_np * 2)
    assert len(plans) == 8
