"""The scheduler's fusion, pinned: canonical patterns must not cost more kernels."""
import numpy as np
import pytest

import luban
from luban import debug
from luban.schedule.run import realize


def kernels(fn) -> int:
    debug.reset_kernel_count()
    fn()
    return debug.kernel_count()


@pytest.fixture
def inputs(device):
    rng = np.random.default_rng(0)
    return [luban.tensor(rng.standard_normal((64, 32)).astype(np.float32)).realize() for _ in range(3)]


def test_elementwise_chain_is_one_kernel(inputs):
    a, b, c = inputs
    out = ((a * b) + c).relu()
    assert kernels(out.realize) == 1
    np.testing.assert_allclose(out.numpy(), np.maximum(a.numpy() * b.numpy() + c.numpy(), 0), rtol=1e-6)


def test_elementwise_into_reduce_is_one_kernel(inputs):
    a, b, _ = inputs
    out = (a * b).sum()
    assert kernels(out.realize) == 1
    np.testing.assert_allclose(out.item(), (a.numpy() * b.numpy()).sum(), rtol=1e-4)


def test_reduce_epilogue_fuses(inputs):
    a, _, _ = inputs
    out = a.sum(1) * 2 + 1  # the keepdim-less reshape must not break the epilogue
    assert kernels(out.realize) == 1
    np.testing.assert_allclose(out.numpy(), a.numpy().sum(1) * 2 + 1, rtol=1e-5)


@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_softmax_at_most_three_kernels(inputs, fn):
    a = inputs[0]
    out = getattr(a, fn)(-1)
    assert kernels(out.realize) <= 3
    x = a.numpy()
    ref = np.exp(x - x.max(-1, keepdims=True))
    ref = ref / ref.sum(-1, keepdims=True)
    np.testing.assert_allclose(out.numpy(), ref if fn == "softmax" else np.log(ref), rtol=1e-5, atol=1e-6)


def test_linear_forward_backward_at_most_five_kernels(inputs):
    x = inputs[0]
    w = luban.tensor(np.random.default_rng(1).standard_normal((16, 32)).astype(np.float32), requires_grad=True)
    b = luban.zeros(16, requires_grad=True)

    def step():
        loss = (x @ w.T + b).relu().sum()
        loss.backward()
        luban.schedule.realize([loss.lazydata, w.grad.lazydata, b.grad.lazydata])
    # matmul, relu-gradient mask, dW, db, loss
    assert kernels(step) <= 5
    h = x.numpy() @ w.detach().numpy().T
    mask = (h > 0).astype(np.float32)
    np.testing.assert_allclose(w.grad.numpy(), mask.T @ x.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(b.grad.numpy(), mask.sum(0), rtol=1e-5)


def test_movement_ops_are_views(inputs):
    a = inputs[0]
    view = a.reshape(32, 64).permute(1, 0).flip(0)[2:10]
    assert kernels(lambda: None) == 0
    assert view.lazydata.buffer is None  # nothing computed until asked
    assert kernels(view.realize) == 1  # one copy kernel reads through all the views
    np.testing.assert_array_equal(view.numpy(), a.numpy().reshape(32, 64).T[::-1][2:10])


def test_nothing_runs_until_needed(inputs):
    a, b, _ = inputs
    out = (a + b).exp().sum(0)
    assert kernels(lambda: (out * 2).lazydata) == 0


def test_shared_subtree_reading_many_buffers_is_computed_once(inputs):
    """A sum of several buffers that three kernels read (a residual stream read by a
    LayerNorm's statistics and its output) is one kernel of its own; a cheap one (two
    buffers) stays inlined in each reader."""
    a, b, c = inputs
    d = (a * 2).realize()
    for parts, want in (((a, b, c, d), 4), ((a, b), 3)):
        x = parts[0]
        for p in parts[1:]:
            x = x + p
        outs = [x.sum(0), x.amax(1), (x * 3).sum(1)]
        assert kernels(lambda: realize([o.lazydata for o in outs])) == want  # one schedule
        ref = sum(p.numpy() for p in parts)
        np.testing.assert_allclose(outs[0].numpy(), ref.sum(0), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(outs[1].numpy(), ref.max(1), rtol=1e-6)
        np.testing.assert_allclose(outs[2].numpy(), (ref * 3).sum(1), rtol=1e-4, atol=1e-4)


def test_shared_chain_is_stored_once_at_its_top(inputs):
    """(x - mean) * rstd * w + b read by several kernels (an inference LayerNorm feeding
    a matmul and a residual add) is stored once, whole: its inner part reads as many
    buffers, but its only reader is the rest of the chain, shared by the same kernels."""
    x, h, _ = inputs
    ln = luban.nn.LayerNorm(32)
    with luban.no_grad():
        ln.weight.copy_(luban.tensor(np.linspace(0.5, 1.5, 32, dtype=np.float32)))
        ln.bias.copy_(luban.tensor(np.linspace(-1, 1, 32, dtype=np.float32)))
        y = ln(x)
        outs = [y @ h[:32], y + 1, y.relu()]
        from luban.codegen.patterns import recognize
        ks = _schedule_kernels(outs)
        stored = [k for k in ks if k.ast.shape == (64, 32) and not recognize(k)]  # not the matmul
        assert len(stored) == 3, [k.name for k in ks]  # y once, then y + 1 and relu(y)
        xn = x.numpy()
        ref = (xn - xn.mean(1, keepdims=True)) / np.sqrt(xn.var(1, keepdims=True) + 1e-5)
        ref = ref * np.linspace(0.5, 1.5, 32) + np.linspace(-1, 1, 32)
        for t, want in zip(outs, (ref @ h.numpy()[:32], ref + 1, np.maximum(ref, 0))):
            np.testing.assert_allclose(t.numpy(), want, rtol=1e-4, atol=1e-4)


def _kernels_on(device: str, targets) -> list:
    from luban.schedule.fusion import create_schedule
    return [it.kernel for it in create_schedule([t.lazydata for t in targets])]


@pytest.mark.parametrize("dim", [-1, 0])
def test_row_softmax_and_layer_norm_are_one_kernel_where_rows_are_loops(dim):
    """On the cpu device (rows run as loops) a softmax over the last dim and an inference
    LayerNorm are one kernel each, every row's max/sum or mean/variance computed once
    in it; over another dim (a column) the reduces stay kernels of their own."""
    rng = np.random.default_rng(0)
    xn = rng.standard_normal((48, 40)).astype(np.float32)
    x = luban.tensor(xn, device="cpu")
    w = luban.tensor(np.linspace(0.5, 2, 40, dtype=np.float32), device="cpu")
    with luban.no_grad():
        sm, ln = x.softmax(dim), luban.nn.functional.layer_norm(x, (40,), w, w)
        assert len(_kernels_on("cpu", [sm])) == (1 if dim == -1 else 3)
        assert len(_kernels_on("cpu", [ln])) == 1
        e = np.exp(xn - xn.max(dim, keepdims=True))
        np.testing.assert_allclose(sm.numpy(), e / e.sum(dim, keepdims=True), rtol=1e-5, atol=1e-7)
        ref = (xn - xn.mean(1, keepdims=True)) / np.sqrt(xn.var(1, keepdims=True) + 1e-5)
        np.testing.assert_allclose(ln.numpy(), ref * w.numpy() + w.numpy(), rtol=1e-4, atol=1e-5)


def test_few_long_rows_keep_their_reduces_apart():
    """Two rows of a softmax would run fused on at most two threads, one row each: below
    fusion.ROW_MIN rows the max and the sum stay kernels of their own, each parallel."""
    from luban.schedule.fusion import ROW_MIN
    rng = np.random.default_rng(2)
    for rows, want in ((ROW_MIN - 1, 3), (ROW_MIN, 1)):
        xn = rng.standard_normal((rows, 300)).astype(np.float32)
        sm = luban.tensor(xn, device="cpu").softmax(-1)
        assert len(_kernels_on("cpu", [sm])) == want
        e = np.exp(xn - xn.max(-1, keepdims=True))
        np.testing.assert_allclose(sm.numpy(), e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-7)


def test_row_fusion_keeps_matmuls_out_of_row_loops_and_full_reduces_exact():
    """A matmul read under a row sum is stored by a GEMM, not recomputed per element of
    the row loop; a softmax summed over everything, or taken over a transposed view,
    stays exact."""
    from luban.codegen.patterns import Gemm, recognize
    rng = np.random.default_rng(1)
    an, bn_ = rng.standard_normal((32, 24)).astype(np.float32), rng.standard_normal((24, 40)).astype(np.float32)
    a, b = luban.tensor(an, device="cpu"), luban.tensor(bn_, device="cpu")
    with luban.no_grad():
        s = a @ b
        out = s - (s * s).sum(-1, keepdim=True)
        found = [recognize(k) for k in _kernels_on("cpu", [out])]
        assert any(f and isinstance(f[0], Gemm) and f[1] is None for f in found), found
        sn = an @ bn_
        np.testing.assert_allclose(out.numpy(), sn - (sn * sn).sum(-1, keepdims=True), rtol=1e-4, atol=1e-3)
        for t, ref in ((a.softmax(-1).sum(), 32.0), (a.T.softmax(-1), None)):
            if ref is None:
                e = np.exp(an.T - an.T.max(-1, keepdims=True))
                np.testing.assert_allclose(t.numpy(), e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-7)
            else:
                assert t.item() == pytest.approx(ref, rel=1e-5)


def _schedule_kernels(targets):
    from luban.schedule.fusion import create_schedule
    return [it.kernel for it in create_schedule([t.lazydata for t in targets]) if it.kernel is not None]


def test_conv_of_an_expression_reads_it_unpadded_and_stays_a_contraction():
    """relu(x * a + b) under a conv's windows is stored once at its own shape (not as a
    half-windowed copy), so the forward, input- and weight-gradient kernels are all
    contractions over plain buffers."""
    from luban.codegen.patterns import Contraction, recognize
    rng = np.random.default_rng(0)
    x = luban.tensor(rng.standard_normal((4, 3, 8, 8)).astype(np.float32)).requires_grad_()
    a, b = (luban.tensor(rng.standard_normal((1, 3, 1, 1)).astype(np.float32)) for _ in range(2))
    w = luban.tensor(rng.standard_normal((5, 3, 3, 3)).astype(np.float32)).requires_grad_()
    g = luban.tensor(rng.standard_normal((4, 5, 8, 8)).astype(np.float32))
    y = luban.nn.functional.conv2d((x * a + b).relu(), w, padding=1)
    (y * g).sum().backward()
    ks = _schedule_kernels([y, x.grad, w.grad])
    shapes = {k.ast.shape for k in ks}
    assert all(len(s) <= 4 or sorted(s)[:len(s) - 4] == [1] * (len(s) - 4) for s in shapes), shapes
    found = [recognize(k) for k in ks]
    assert sum(isinstance(f[0], Contraction) for f in found if f) == 3, [k.name for k in ks]


def test_conv_input_shared_in_inference_is_stored_padded():
    """relu(x * a + b) read by a convolution and by other kernels (a residual block's
    input, in inference): the work is stored padded, by a kernel, so the convolution
    reads it in place; not stored bare, which leaves the claim a zero-padded copy to
    make outside the compiled run."""
    from luban.codegen.patterns import Contraction, recognize
    rng = np.random.default_rng(0)
    x = luban.tensor(rng.standard_normal((4, 3, 8, 8)).astype(np.float32))
    a, b = (luban.tensor(rng.standard_normal((1, 3, 1, 1)).astype(np.float32)) for _ in range(2))
    w = luban.tensor(rng.standard_normal((5, 3, 3, 3)).astype(np.float32))
    with luban.no_grad():
        z = (x * a + b).relu()
        outs = [luban.nn.functional.conv2d(z, w, padding=1), z + 1, z * 2]
        found = [recognize(k) for k in _schedule_kernels(outs)]
        convs = [f[0] for f in found if f and isinstance(f[0], Contraction)]
        assert len(convs) == 1 and convs[0].a.padded is None and convs[0].b.padded is None, convs
        zn = np.maximum(x.numpy() * a.numpy() + b.numpy(), 0)
        np.testing.assert_allclose(outs[1].numpy(), zn + 1, rtol=1e-6)
        ref = luban.nn.functional.conv2d(luban.tensor(zn), w, padding=1).numpy()  # over a plain input
        np.testing.assert_allclose(outs[0].numpy(), ref, rtol=1e-4, atol=1e-4)


def test_matmul_of_merged_heads_stays_a_gemm():
    """(probs @ v) with its heads merged back into rows, then a linear layer: the
    attention output is stored in the merged layout, so the projection is a Gemm."""
    from luban.codegen.patterns import Gemm, recognize
    rng = np.random.default_rng(1)
    p = luban.tensor(rng.standard_normal((1, 4, 32, 32)).astype(np.float32))
    v = luban.tensor(rng.standard_normal((1, 4, 32, 16)).astype(np.float32))
    w = luban.tensor(rng.standard_normal((48, 64)).astype(np.float32))
    ctx = (p.softmax(-1) @ v).transpose(1, 2).reshape(1, 32, 64)
    out = ctx @ w.T
    ks = _schedule_kernels([out])
    assert isinstance(recognize(ks[-1])[0], Gemm), [k.name for k in ks]


def test_gelu_mlp_training_step_has_three_hidden_size_kernels():
    """A transformer MLP (Linear, GELU, Linear) trained with AdamW: three kernels the size
    of the hidden layer: the first Linear's product, GELU's output (elementwise), and
    the product of the output gradient and the second weight with GELU's gradient as
    its epilogue, one expression (GELU has its own backward rule; composed, autograd's
    pieces of that gradient were three kernels, each recomputing erf)."""
    luban.manual_seed(0)
    rng = np.random.default_rng(0)
    c, hidden = 32, 128
    mlp = luban.nn.Sequential(luban.nn.Linear(c, hidden), luban.nn.GELU(), luban.nn.Linear(hidden, c))
    opt = luban.optim.AdamW(mlp.parameters(), lr=1e-3)
    x = luban.tensor(rng.standard_normal((4, 16, c)).astype(np.float32))
    for _ in range(2):
        with luban.profile() as prof:
            h = x + mlp(x)
            loss = (h * h).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
    names = [e.name for e in prof.events if e.kind == "kernel"]
    dims = lambda n: n.split("_")[1].split("x")
    hidden_size = [n for n in names if "scalar" not in n and np.prod([int(s) for s in dims(n)]) == 4 * 16 * hidden]
    assert len(hidden_size) == 3, names
    assert len([n for n in hidden_size if n.startswith("elementwise_")]) == 1, names


@pytest.mark.parametrize("norm", ["layer_norm", "group_norm", "batch_norm"])
def test_norm_gradient_is_two_row_reductions_and_one_pass(norm):
    """layer/group/batch norm carry their own backward rule: the input gradient is two
    reductions (mean of g, mean of g * xhat) and one elementwise pass over x's size."""
    rng = np.random.default_rng(2)
    x = luban.tensor(rng.standard_normal((64, 8, 32)).astype(np.float32)).realize().requires_grad_()
    g = luban.tensor(rng.standard_normal((64, 8, 32)).astype(np.float32)).realize()
    F = luban.nn.functional
    norms = {"layer_norm": lambda F, x: F.layer_norm(x, (32,)), "group_norm": lambda F, x: F.group_norm(x, 4),
             "batch_norm": lambda F, x: F.batch_norm(x, None, None, training=True)}
    y = norms[norm](F, x)
    (y * g).sum().backward()
    assert kernels(x.grad.realize) <= 3 + 2  # + the forward's mean and variance
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x.numpy(), requires_grad=True)
    yt = norms[norm](torch.nn.functional, xt)
    (yt * torch.tensor(g.numpy())).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_scatter_values_holding_a_reduce_are_computed_first():
    """A position embedding's gradient: the batch's sum is its own kernel (a vectorized
    reduce), and the scatter into the table only reads it; inside the scatter, the sum
    ran down a column per table entry (W3: 570 us against 45)."""
    from luban.graph.ops import REDUCE, Op
    rng = np.random.default_rng(0)
    emb = luban.nn.Embedding(16, 24)
    x = luban.tensor(rng.standard_normal((5, 16, 24)).astype(np.float32))
    out = x + emb(luban.arange(16))  # broadcast over the batch of 5
    (out * out).sum().backward()
    ks = _schedule_kernels([emb.weight.grad])
    scatters = [k for k in ks if any(n.op is Op.SCATTER_ADD for n in k.ast.toposort())]
    assert len(scatters) == 1
    assert not any(n.op in REDUCE for n in scatters[0].ast.toposort()), scatters[0].ast.pretty(2)
    want = (2 * (x.numpy() + emb.weight.detach().numpy()[None])).sum(0)
    np.testing.assert_allclose(emb.weight.grad.numpy(), want, rtol=1e-5, atol=1e-5)


def test_split_projection_is_computed_once_and_read_in_place(inputs):
    """q, k and v split from one projection: the projection (with its bias) is one
    kernel, and attention's matmuls read their heads from it in place, with no kernel
    copying a piece into a layout of its own."""
    x = inputs[0]
    rng = np.random.default_rng(2)
    w = luban.tensor(rng.standard_normal((96, 32)).astype(np.float32))
    b = luban.tensor(rng.standard_normal(96).astype(np.float32))
    realize([w.lazydata, b.lazydata])
    q, k, v = (x @ w.T + b).split(32, dim=-1)
    q, k, v = (t.reshape(64, 4, 8).transpose(0, 1) for t in (q, k, v))
    out = (q @ k.transpose(-2, -1)) @ v
    assert kernels(out.realize) == 3  # the projection, the scores, the output
    p = x.numpy() @ w.numpy().T + b.numpy()
    qn, kn, vn = (p[:, i * 32:(i + 1) * 32].reshape(64, 4, 8).transpose(1, 0, 2) for i in range(3))
    ref = (qn @ kn.transpose(0, 2, 1)) @ vn
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


def test_shared_reduce_is_stored_in_the_layout_its_readers_see(inputs):
    """A matmul read through a transpose by two kernels is stored transposed (its GEMM
    writes through the permute), so neither reader walks it column by column."""
    from luban.schedule.fusion import create_schedule
    a, b, _ = inputs
    y = (a @ b.T).T  # (64, 64) -> its transpose
    outs = [y + 1, y * 2]
    items = create_schedule([t.lazydata for t in outs])
    assert len(items) == 3
    assert items[0].out is y.lazydata  # the transpose itself, not the product under it
    want = (a.numpy() @ b.numpy().T).T
    for t, ref in zip(outs, (want + 1, want * 2)):
        np.testing.assert_allclose(t.numpy(), ref, rtol=1e-4, atol=1e-4)


def test_weight_gradients_run_as_soon_as_their_inputs_are_ready(device):
    """Gradients of a 3-layer MLP realized together (as an optimizer step does), listed
    first layer first: each weight gradient runs right after the output gradient it
    reads, last layer first, not after the whole backward pass (depth-first order)."""
    from luban.schedule.fusion import create_schedule
    rng = np.random.default_rng(0)
    x = luban.tensor(rng.standard_normal((32, 16)).astype(np.float32))
    ws = [luban.tensor(rng.standard_normal((16, 16)).astype(np.float32), requires_grad=True) for _ in range(3)]
    h = x
    for w in ws:
        h = (h @ w).relu()
    h.sum().backward()
    items = create_schedule([w.grad.lazydata for w in ws])
    at = {id(it.out): i for i, it in enumerate(items)}
    first, second, last = (at[id(w.grad.lazydata)] for w in ws)
    assert last < second < first
    for i, it in enumerate(items):  # still producers first
        assert all(at.get(id(s), -1) < i for s in it.inputs)
    want_h = [x.numpy()]
    for w in ws:
        want_h.append(np.maximum(want_h[-1] @ w.numpy(), 0))
    g = np.ones_like(want_h[-1])
    for j in (2, 1, 0):
        g = g * (want_h[j + 1] > 0)
        np.testing.assert_allclose(ws[j].grad.numpy(), want_h[j].T @ g, rtol=1e-4, atol=1e-4)
        g = g @ ws[j].numpy().T


def test_matmul_under_a_shared_residual_add_is_its_kernel(inputs):
    """x + (h @ w.T + b) read by three kernels is stored once, by one kernel: the GEMM
    with the bias and residual add as its epilogue, not the bare product stored first
    and re-read by an add kernel of its own."""
    from luban.schedule.fusion import create_schedule
    from luban.graph.ops import REDUCE, Op
    x, h, w = inputs
    b = luban.tensor(np.arange(32, dtype=np.float32) / 32)
    y = x + (h @ w[:32] + b)
    outs = [y.sum(1), y * 2, y.relu()]
    items = create_schedule([t.lazydata for t in outs])
    assert len(items) == 4, [it.kernel.name for it in items]
    stored = [it.out for it in items]
    assert not any(n.shape == (64, 32) and (n.op in REDUCE or n.op is Op.RESHAPE) for n in stored)  # no bare product
    want = x.numpy() + (h.numpy() @ w.numpy()[:32] + b.numpy())
    for t, ref in zip(outs, (want.sum(1), want * 2, np.maximum(want, 0))):
        np.testing.assert_allclose(t.numpy(), ref, rtol=1e-4, atol=1e-4)


def test_linear_relu_stores_only_the_activation(device):
    """A Linear + ReLU's backward reads the ReLU's output, so the product is stored
    nowhere: on a device claiming GEMMs it ends in the bias and the ReLU as epilogue, the
    output gradient's in the ReLU mask. Two layers' training graph: 9 kernels (11 when
    the backward redid the ReLU from the product)."""
    from luban.schedule.fusion import create_schedule
    rng = np.random.default_rng(0)
    xv = rng.standard_normal((64, 32)).astype(np.float32)
    l1, l2 = luban.nn.Linear(32, 48), luban.nn.Linear(48, 16)
    loss = l2(l1(luban.tensor(xv)).relu()).square().sum()
    loss.backward()
    params = (l1.weight, l1.bias, l2.weight, l2.bias)
    items = [it for it in create_schedule([loss.lazydata] + [p.grad.lazydata for p in params]) if it.kernel]
    assert len(items) == 9, [it.kernel.name for it in items]
    w1, b1, w2, b2 = (p.detach().numpy().astype(np.float64) for p in params)
    z = xv @ w1.T + b1
    h = np.maximum(z, 0)
    dout = 2 * (h @ w2.T + b2)
    dz = (dout @ w2) * (z > 0)
    for p, want in zip(params, (dz.T @ xv, dz.sum(0), dout.T @ h, dout.sum(0))):
        np.testing.assert_allclose(p.grad.numpy(), want, rtol=1e-4, atol=1e-3)
