"""A jit replay on the cpu device runs its kernels as one sequence (schedule/sequence.py,
runtime/cpu_sequence.py): claimed GEMMs with and without epilogues and generated kernels
from one C loop, a padded contraction in Python between C runs, temporaries in buffers
planned once. Replays must match eager step for step."""
import numpy as np
import pytest

import luban
from luban import dtypes as D, nn
from luban.codegen import c
from luban.codegen.kernel import Kernel, KNode
from luban.graph.ops import Op
from luban.runtime.cpu import CPUDevice
from luban.schedule.sequence import plan_reuse

F = nn.functional


class Net(nn.Module):
    """Big enough that the cpu device claims its matmuls and its padded convolution."""
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1)
        self.fc1, self.fc2 = nn.Linear(8 * 8 * 8, 96), nn.Linear(96, 5)

    def forward(self, x):
        h = F.relu(self.conv(x)).flatten(1)
        return self.fc2(F.gelu(self.fc1(h)))


def _train(jitted: bool, steps: int = 8):
    luban.manual_seed(0)
    model = Net()
    opt = luban.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)  # momentum: an epilogue on the weight gradient GEMMs
    rng = np.random.default_rng(1)
    x = luban.tensor(rng.standard_normal((16, 4, 8, 8)).astype(np.float32))
    y = luban.tensor(rng.integers(0, 5, 16))

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    fn = luban.jit(step) if jitted else step
    losses = [fn().item() for _ in range(steps)]
    return losses, {k: v.numpy() for k, v in model.state_dict().items()}, fn


def _entry(fn):
    (entry,) = [e for e in fn.entries.values() if e.status == "replay"]
    return entry


def _runner(fn):
    return _entry(fn).tape.sequence.runner


def test_claimed_gemms_replay_from_one_c_loop_and_match_eager():
    eager, eager_state, _ = _train(False)
    jitted, jit_state, fn = _train(True)
    assert fn.stats["replays"] >= 3
    np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-7)
    for k in eager_state:
        np.testing.assert_allclose(jit_state[k], eager_state[k], rtol=1e-6, atol=1e-7, err_msg=k)
    runner = _runner(fn)
    kinds = runner.steps[:, 0]
    assert (kinds == 1).sum() >= 3  # fc1, fc2 and their gradients: luban's GEMM called from C
    assert any(name.endswith("+epilogue") for name in runner.names)
    python = [s for s in runner.segments if len(s) == 3]
    assert python and all(s[2].startswith("contract_") for s in python)  # the padded convolution


@pytest.mark.parametrize("m,k,n", [(150, 40, 70), (16, 9000, 32), (2048, 64, 1)])
def test_gemm_epilogues_run_on_blocks_inside_the_gemm(m, k, n):
    """A GEMM's elementwise epilogue (bias + GELU) in a replay runs inside the GEMM, on
    each block of the result as the GEMM finishes it: row blocks cut among the threads,
    K split among them (16 x 32 by 9000), and C computed transposed (a vector result, of
    x given column-major so that the GEMM claims it). Exactly eager's values, and no
    separate epilogue kernel in the sequence."""
    luban.manual_seed(0)
    lin = nn.Linear(k, n)
    x = luban.tensor(np.random.default_rng(m).standard_normal((k, m)).astype(np.float32))
    f = lambda x: F.gelu(lin(x.T))
    want = f(x).numpy()
    fn = luban.jit(f)
    for _ in range(4):
        np.testing.assert_array_equal(fn(x).numpy(), want)
    runner = _runner(fn)
    assert [s for s in range(len(runner.names)) if runner.steps[s, 5]] == [0], runner.names
    assert not any("_epilogue" in name for name in runner.names)


def test_temporaries_share_buffers():
    """A chain of matmuls: each intermediate dies after the next reads it, so a few
    buffers serve them all."""
    rng = np.random.default_rng(1)
    ws = [luban.tensor(rng.standard_normal((48, 48)).astype(np.float32) / 7) for _ in range(6)]
    x = luban.tensor(rng.standard_normal((40, 48)).astype(np.float32))

    def chain(x):
        for w in ws:
            x = (x @ w).tanh()
        return x.sum()
    fn = luban.jit(chain)
    want = chain(x).item()
    for _ in range(4):
        assert fn(x).item() == pytest.approx(want, rel=1e-5)
    entry = _entry(fn)
    temps = len(entry.tape.items) - len(entry.tape.sequence.fresh)
    assert 0 < len(entry.tape.sequence.buffers) < temps


def _gather_kernel():
    x = KNode(Op.LOAD, (), 0, D.float32, (5, 7))
    idx = KNode(Op.LOAD, (), 1, D.int64, (5, 3))
    return Kernel(KNode(Op.GATHER, (x, idx), 1, D.float32, (5, 3)), ((D.float32, (5, 7)), (D.int64, (5, 3))),
                  "gather_in_sequence")


def test_sequence_runs_kernels_and_reports_a_bad_index():
    """Two launches sharing an input slot; an out-of-range index in the second raises
    IndexError naming its kernel, as a lone launch does (the frontend checks indices on
    the host, so only the device hook itself can be fed one)."""
    dev = CPUDevice()
    r = c.render(_gather_kernel())
    prog = dev.compile(r.source, r.name)
    seq = dev.sequence([(prog, (0, 1, 2)), (prog, (3, 1, 4))], 5)
    x = np.arange(35, dtype=np.float32).reshape(5, 7)
    i1 = np.array([[0, 6, 2]] * 5)
    bufs = [dev.alloc(n) for n in (60, x.nbytes, i1.nbytes, 60, i1.nbytes)]
    dev.copyin(bufs[1], x)
    dev.copyin(bufs[2], i1)
    dev.copyin(bufs[4], i1[:, ::-1].copy())
    for k, b in enumerate(bufs):
        seq.set(k, b)
    seq.run()
    for k, want in ((0, np.take_along_axis(x, i1, 1)), (3, np.take_along_axis(x, i1[:, ::-1], 1))):
        got = np.empty((5, 3), np.float32)
        dev.copyout(got, bufs[k])
        np.testing.assert_array_equal(got, want)
    bad = i1.copy()
    bad[2, 1] = 7
    dev.copyin(bufs[4], bad)
    with pytest.raises(IndexError, match="out of range in kernel gather_in_sequence"):
        seq.run()


def test_plan_reuse_never_shares_a_live_buffer():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 30))
        outputs = [(i, i + int(rng.integers(0, 5)), int(rng.choice([8, 16, 64]))) for i in range(n)]
        ids, sizes = plan_reuse(outputs)
        assert len(ids) == n
        for i, (made, last, nbytes) in enumerate(outputs):
            assert sizes[ids[i]] == nbytes
            for j in range(i):  # an earlier output on the same buffer is dead before i is made
                if ids[j] == ids[i]:
                    assert outputs[j][1] < made
    chain = [(i, i + 1, 8) for i in range(10)]  # each read only by the next step: two buffers
    assert len(plan_reuse(chain)[1]) == 2


def _active_b_caches(fn) -> int:
    runner = _runner(fn)
    return int(sum(runner.steps[step, 7] != 0 for step, _, _ in runner._bcaches))


def test_an_unchanged_weight_is_packed_once_and_a_changed_one_again():
    """Inference replays pack a Linear's weight (B of x @ W^T, packed as it is not read in
    place) once into a cache and read it from there while the weight's buffer stays the
    same; a new weight (set through .data, or from a buffer the pool hands back with new
    values) is packed again: every result equals the eager one for the weight it had."""
    luban.manual_seed(0)
    rng = np.random.default_rng(3)
    w1 = rng.standard_normal((96, 200)).astype(np.float32)
    lin = nn.Linear(200, 96, bias=False)
    lin.weight.data = luban.tensor(w1)
    fn = luban.jit(lambda x: lin(x))
    xs = [rng.standard_normal((40, 200)).astype(np.float32) for _ in range(4)]
    for x in xs:
        np.testing.assert_allclose(fn(luban.tensor(x)).numpy(), x @ w1.T, rtol=1e-5, atol=1e-5)
    assert _active_b_caches(fn) == 1
    w2 = rng.standard_normal((96, 200)).astype(np.float32)
    lin.weight.data = luban.tensor(w2)
    for x in xs:
        np.testing.assert_allclose(fn(luban.tensor(x)).numpy(), x @ w2.T, rtol=1e-5, atol=1e-5)
    assert _active_b_caches(fn) == 1

    g = luban.jit(lambda x, w: x @ w.t())  # the weight an argument: its buffer freed, reused
    x = luban.tensor(xs[0])
    w = luban.tensor(w1)
    for _ in range(4):
        np.testing.assert_allclose(g(x, w).numpy(), xs[0] @ w1.T, rtol=1e-5, atol=1e-5)
    assert _active_b_caches(g) == 1
    handle = w.lazydata.buffer.handle
    del w
    w = luban.tensor(w2)
    assert w.lazydata.buffer.handle is handle  # the same memory, new values
    np.testing.assert_allclose(g(x, w).numpy(), xs[0] @ w2.T, rtol=1e-5, atol=1e-5)


def test_a_trained_weight_is_not_cached():
    """A weight that changes every step is packed beside the products as before: no
    cache memory is taken for it."""
    _, _, fn = _train(True, steps=6)
    runner = _runner(fn)
    assert runner._bcaches and all(c is None for c in runner._caches)


def test_packed_weight_caches_stay_within_their_memory_cap(monkeypatch):
    """Caches past LUBAN_CPU_PACK_CACHE_MB (CPUSequence.PACK_CACHE_BYTES) are not made:
    those GEMMs pack their weight as usual, with the same results."""
    from luban.runtime.cpu_sequence import CPUSequence
    luban.manual_seed(0)
    rng = np.random.default_rng(4)
    l1, l2 = nn.Linear(200, 96, bias=False), nn.Linear(96, 80, bias=False)
    x = rng.standard_normal((40, 200)).astype(np.float32)
    want = l2(l1(luban.tensor(x))).numpy()
    monkeypatch.setattr(CPUSequence, "PACK_CACHE_BYTES", 96 * 200 * 4 + 4096)  # room for l1's weight only
    fn = luban.jit(lambda x: l2(l1(x)))
    for _ in range(4):
        np.testing.assert_allclose(fn(luban.tensor(x)).numpy(), want, rtol=1e-5, atol=1e-5)
    runner = _runner(fn)
    assert len(runner._bcaches) == 2 and _active_b_caches(fn) == 1
    assert runner._cached <= CPUSequence.PACK_CACHE_BYTES
