"""luban.profile and LUBAN_DEBUG=2: per-kernel FLOPs/bytes against hand counts, and the
profile's bookkeeping against the process kernel counter. No timing thresholds."""
import os
import subprocess
import sys

import numpy as np
import pytest

import luban
from luban import debug
from luban.codegen.cost import bytes_moved, flops
from luban.schedule import run
from luban.schedule.fusion import create_schedule

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
F32 = 4  # bytes


def kernels_of(t: luban.Tensor) -> list:
    return [it.kernel for it in create_schedule([t.lazydata]) if it.kernel is not None]


def randn(*shape) -> luban.Tensor:
    return luban.tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32)).realize()


def test_matmul_flops_and_bytes():
    M, K, N = 8, 16, 4
    (k,) = kernels_of(randn(M, K) @ randn(K, N))
    assert flops(k) == 2 * M * N * K  # one MUL and one add per (m, n, k)
    assert bytes_moved(k) == (M * K + K * N + M * N) * F32


def test_elementwise_chain_flops_and_bytes():
    (k,) = kernels_of((randn(10, 20) * 2 + 1).sqrt())
    assert flops(k) == 3 * 10 * 20  # MUL, ADD, SQRT per element; constants are free
    assert bytes_moved(k) == 2 * 10 * 20 * F32


@pytest.mark.parametrize("dev", ["cpu", "numpy"])
def test_softmax_flops(dev):
    if dev not in luban.available_devices():
        pytest.skip(f"needs the {dev} device")
    B, N = 10, 20
    ks = kernels_of(randn(B, N).to(dev).realize().softmax(-1))
    # max: RMAX over B*N. sum: x + neg(max), * log2(e), exp2, SUM: 5 per element.
    # out: the same 4 for exp(x - max), recip(sum) broadcast, MUL: 6 per element.
    parts = [B * N, 5 * B * N, 6 * B * N]
    if dev == "cpu":  # rows run as loops: one kernel does all three, each row's max and sum once
        assert [flops(k) for k in ks] == [sum(parts)]
        assert [bytes_moved(k) for k in ks] == [2 * B * N * F32]
    else:
        assert [flops(k) for k in ks] == parts
        assert [bytes_moved(k) for k in ks] == [(B * N + B) * F32, (B * N + 2 * B) * F32, (2 * B * N + 2 * B) * F32]


def test_pad_charges_only_valid_elements_and_shared_nodes_once():
    x = randn(10, 20)
    (k,) = kernels_of((x * 2).pad((1, 1)) + 1)
    assert flops(k) == 10 * 20 + 10 * 22  # MUL inside the pad, ADD on the padded shape
    y = x * 3
    (k,) = kernels_of(y + y)
    assert flops(k) == 2 * 10 * 20  # y is one hash-consed node: computed once


def test_profile_counts_every_kernel(device):
    x = randn(32, 16).to(device)
    w = randn(16, 8).to(device)
    n0 = debug.kernel_count()
    with luban.profile() as prof:
        (x @ w).relu().softmax(-1).sum().item()
    assert prof.kernel_count() == debug.kernel_count() - n0 > 0
    assert all(e.device == device for e in prof.events if e.kind == "kernel")


def test_profile_table_and_totals_are_consistent():
    x, w = randn(64, 32), randn(32, 16)
    with luban.profile() as prof:
        for _ in range(3):
            (x @ w).softmax(-1).realize()
    kern = [e for e in prof.events if e.kind == "kernel"]
    rows = prof.key_averages()
    table = prof.table()
    for e in kern:
        assert e.name in table
    per_call = 2 if x.device == "cpu" else 4  # matmul + softmax (3 kernels where rows are not loops)
    assert sum(r.count for r in rows) == len(kern) == 3 * per_call
    assert sum(r.flops for r in rows) == 3 * (2 * 64 * 16 * 32 + 12 * 64 * 16)
    t = prof.totals()
    assert abs(sum(r.seconds for r in rows) - t["kernel"]) < 1e-9
    assert t["kernel"] + t["copy"] + t["compile"] + t["schedule"] <= t["wall"]
    assert [r.seconds for r in rows] == sorted((r.seconds for r in rows), reverse=True)
    assert "GFLOP/s" in table and "wall" in table and "scheduling" in table
    limited = prof.table(row_limit=1)
    assert sum(f"{r.name} " in limited for r in rows) == 1 and f"{len(rows) - 1} more" in limited
    with pytest.raises(ValueError):
        prof.table(sort_by="nope")


def test_profile_records_compiles_only_for_new_kernels():
    x = randn(37, 29)  # a shape no other test uses: its kernel is new to this process
    with luban.profile() as first:
        (x * 5 - 2).realize()
    with luban.profile() as second:
        (x * 5 - 2).realize()
    assert sum(e.kind == "render" for e in first.events) == 1
    assert sum(e.kind == "render" for e in second.events) == 0
    assert second.totals()["compile"] <= second.totals()["wall"]


def test_profile_records_device_copies():
    if "numpy" not in luban.available_devices():
        pytest.skip("needs the numpy device")
    x = randn(5, 7).to("cpu")
    with luban.profile() as prof:
        x.to("numpy").realize()
    (copy,) = [e for e in prof.events if e.kind == "copy"]
    assert copy.nbytes == 5 * 7 * F32 and copy.name == "copy cpu->numpy"


def test_profiling_off_leaves_the_launch_path_untouched():
    def phase_fns():  # what a profile wraps: realize's schedule step, _precompile, _render
        cache = getattr(run, "schedule_cache", None)
        return (run.create_schedule, getattr(cache, "schedule", None), run._precompile, run._render)
    schedule_fns = phase_fns()
    with luban.profile() as outer:
        with luban.profile() as inner:
            (randn(3, 3) + 1).realize()
        assert run._precompile is not schedule_fns[2]  # still timed for the outer one
        (randn(3, 3) * 2).realize()
    assert phase_fns() == schedule_fns
    assert debug.timing is (debug.level() >= 2)
    assert inner.kernel_count() == 1 and outer.kernel_count() == 2


def test_debug_level_2_line(capsys):
    old = debug.level()
    debug.set_level(2)
    try:
        (randn(4, 4) + 3).realize()
    finally:
        debug.set_level(old)
    err = capsys.readouterr().err
    assert "elementwise_4x4" in err and "GFLOP/s" in err and "GB/s" in err


def test_luban_debug_2_prints_lines_and_exit_summary():
    script = "import luban; x = luban.ones(8, 4); print((x.softmax(-1) * 2).sum().item())"
    env = dict(os.environ, LUBAN_DEBUG="2", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == pytest.approx(16.0)
    err = out.stderr
    assert err.count("GFLOP/s") >= 4  # 3 kernel lines + the table header
    summary = err[err.index("luban profile"):]
    assert "reduce_8x1" in summary and "3 kernels" in summary and "scheduling" in summary
