"""luban.optim against torch.optim: same parameters, same loss, same trajectories; the
whole update realized in few, reused kernels; lr schedules equal to torch's step by step."""
import math

import numpy as np
import pytest
import torch

import luban
import luban.optim as optim
from luban import debug
from luban.optim import lr_scheduler as sched
from luban.schedule import run

SHAPES = [(4, 3), (5,), ()]


def _arrays(seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in SHAPES]


def make_params(seed: int = 0):
    arrays = _arrays(seed)
    return [luban.tensor(a, requires_grad=True) for a in arrays], [torch.tensor(a, requires_grad=True) for a in arrays]


TARGETS, SCALES = _arrays(100), [np.abs(a) + 0.5 for a in _arrays(101)]


def backward(params, lib) -> None:
    """A quadratic bowl: loss = sum(scale * (p - target)^2), so gradients depend on p."""
    loss = 0
    for p, t, s in zip(params, TARGETS, SCALES):
        d = p - lib.tensor(t)
        loss = loss + (d * d * lib.tensor(s)).sum()
    loss.backward()


def assert_close(lparams, tparams) -> None:
    for lp, tp in zip(lparams, tparams):
        np.testing.assert_allclose(lp.numpy(), tp.detach().numpy(), rtol=2e-5, atol=2e-6)


def train(opt, params, steps: int, lib) -> None:
    for _ in range(steps):
        opt.zero_grad()
        backward(params, lib)
        opt.step()


CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1, maximize=True)),
    ("Adam", dict(lr=0.1)),
    ("Adam", dict(lr=0.1, betas=(0.5, 0.9), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.1, amsgrad=True, maximize=True)),
    ("Adam", dict(lr=0.1, amsgrad=True, weight_decay=0.05)),
    ("AdamW", dict(lr=0.1)),
    ("AdamW", dict(lr=0.1, weight_decay=0.3, amsgrad=True)),
    ("AdamW", dict(lr=0.1, weight_decay=0.1, maximize=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, maximize=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.1, weight_decay=0.1, initial_accumulator_value=0.2)),
    ("Adagrad", dict(lr=0.1, eps=1e-6, maximize=True)),
]


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{'-'.join(k)}" for n, k in CASES])
def test_matches_torch(device, name, kwargs):
    lparams, tparams = make_params()
    lopt, topt = getattr(optim, name)(lparams, **kwargs), getattr(torch.optim, name)(tparams, **kwargs)
    for _ in range(6):
        train(lopt, lparams, 1, luban)
        train(topt, tparams, 1, torch)
        assert_close(lparams, tparams)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_param_groups_with_own_options(device, name):
    lparams, tparams = make_params()
    extra = {"SGD": dict(momentum=0.9), "Adam": dict(betas=(0.8, 0.99)), "AdamW": dict(weight_decay=0.5),
             "RMSprop": dict(centered=True), "Adagrad": dict(lr_decay=0.2)}[name]

    def groups(ps):
        return [{"params": ps[:1]}, {"params": ps[1:], "lr": 0.01, **extra}]
    lopt, topt = getattr(optim, name)(groups(lparams), lr=0.1), getattr(torch.optim, name)(groups(tparams), lr=0.1)
    assert lopt.param_groups[1]["lr"] == 0.01 and lopt.param_groups[0]["lr"] == 0.1
    train(lopt, lparams, 5, luban)
    train(topt, tparams, 5, torch)
    assert_close(lparams, tparams)


@pytest.mark.parametrize("name,kwargs", [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(lr=0.1, amsgrad=True)),
                                         ("AdamW", dict(lr=0.1)), ("RMSprop", dict(momentum=0.9, centered=True)),
                                         ("Adagrad", dict(lr_decay=0.1))])
def test_state_dict_round_trip(device, name, kwargs):
    params, _ = make_params()
    opt = getattr(optim, name)(params, **kwargs)
    train(opt, params, 3, luban)
    saved, snapshot = opt.state_dict(), [p.detach() for p in params]  # tensors are values: no deepcopy
    train(opt, params, 3, luban)

    resumed = [t.clone().requires_grad_() for t in snapshot]
    opt2 = getattr(optim, name)(resumed, **kwargs)
    opt2.load_state_dict(saved)
    train(opt2, resumed, 3, luban)
    for a, b in zip(params, resumed):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_state_dict_format_matches_torch(device):
    lparams, tparams = make_params()
    lopt = optim.Adam([{"params": lparams[:2]}, {"params": lparams[2:], "lr": 0.5}])
    topt = torch.optim.Adam([{"params": tparams[:2]}, {"params": tparams[2:], "lr": 0.5}])
    train(lopt, lparams, 2, luban)
    train(topt, tparams, 2, torch)
    lsd, tsd = lopt.state_dict(), topt.state_dict()
    assert list(lsd["state"]) == list(tsd["state"]) == [0, 1, 2]
    assert [g["params"] for g in lsd["param_groups"]] == [[0, 1], [2]]
    assert lsd["param_groups"][1]["lr"] == 0.5
    for i in range(3):
        assert set(lsd["state"][i]) == set(tsd["state"][i])
        assert isinstance(lsd["state"][i]["exp_avg"], luban.Tensor)
        assert lsd["state"][i]["step"].item() == tsd["state"][i]["step"].item() == 2.0
        np.testing.assert_allclose(lsd["state"][i]["exp_avg_sq"].numpy(), tsd["state"][i]["exp_avg_sq"].numpy(),
                                   rtol=1e-5, atol=1e-7)


def test_load_state_dict_rejects_other_shapes(device):
    params, _ = make_params()
    saved = optim.SGD(params, momentum=0.9).state_dict()
    with pytest.raises(ValueError, match="different number of parameter groups"):
        optim.SGD([{"params": params[:1]}, {"params": params[1:]}]).load_state_dict(saved)
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group: group 0 has 3 .* and 2"):
        optim.SGD(params[:2]).load_state_dict(saved)


@pytest.mark.parametrize("name,kwargs,per_param,shared", [
    ("SGD", dict(), 1, 0), ("SGD", dict(momentum=0.9, nesterov=True, weight_decay=0.1), 2, 0),
    ("Adam", dict(), 3, 3), ("Adam", dict(amsgrad=True), 4, 3), ("AdamW", dict(), 3, 3),
    ("RMSprop", dict(momentum=0.9, centered=True), 4, 1), ("Adagrad", dict(), 2, 1),
    ("Adagrad", dict(lr_decay=0.1), 2, 2)])
def test_one_kernel_per_updated_tensor(device, name, kwargs, per_param, shared):
    """Each parameter's whole update fuses: one kernel per tensor written (the parameter
    and each state tensor), plus a few scalar kernels shared by all parameters: the step
    count (kept on the device, so a jitted step replays it) and Adam's bias corrections."""
    params = [luban.tensor(a, requires_grad=True) for a in _arrays(0) + _arrays(1)[:1]]  # 4 parameters
    opt = getattr(optim, name)(params, **kwargs)
    for seed in range(2):  # the first step starts from zero state: a different graph
        for p, g in zip(params, _arrays(seed + 2) + _arrays(seed + 3)[:1]):
            p.grad = luban.tensor(g)  # realized: only the update's kernels are counted
        debug.reset_kernel_count()
        opt.step()
    assert debug.kernel_count() == per_param * len(params) + shared


@pytest.mark.parametrize("name,kwargs", [("SGD", dict(momentum=0.9, weight_decay=0.1)), ("Adam", dict(amsgrad=True)),
                                         ("AdamW", dict()), ("RMSprop", dict(momentum=0.9, centered=True)),
                                         ("Adagrad", dict(lr_decay=0.1))])
def test_changing_lr_reuses_kernels(device, name, kwargs):
    """lr and the bias-correction step are kernel inputs, not constants: no recompiles."""
    params, _ = make_params()
    opt = getattr(optim, name)(params, **kwargs)
    schedule = sched.LambdaLR(opt, lambda epoch: 0.9 ** epoch)
    train(opt, params, 3, luban)
    schedule.step()
    compiled = len(run._programs)
    for _ in range(4):
        train(opt, params, 1, luban)
        schedule.step()
    assert len(run._programs) == compiled


def test_cycled_betas_reuse_kernels(device):
    params, _ = make_params()
    opt = optim.Adam(params)
    cycle = sched.OneCycleLR(opt, max_lr=0.1, total_steps=20)
    for _ in range(3):
        train(opt, params, 1, luban)
        cycle.step()
    compiled, beta1 = len(run._programs), opt.param_groups[0]["betas"][0]
    for _ in range(4):
        train(opt, params, 1, luban)
        cycle.step()
    assert opt.param_groups[0]["betas"][0] != beta1 and len(run._programs) == compiled


def test_step_closure_and_zero_grad(device):
    lparams, tparams = make_params()
    lopt, topt = optim.SGD(lparams, lr=0.1), torch.optim.SGD(tparams, lr=0.1)

    def closure(opt, params, lib):
        def fn():
            opt.zero_grad()
            backward(params, lib)
            return 1.5
        return fn
    assert lopt.step(closure(lopt, lparams, luban)) == 1.5
    topt.step(closure(topt, tparams, torch))
    assert_close(lparams, tparams)
    lopt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.numpy().any() for p in lparams)
    lopt.zero_grad()
    assert all(p.grad is None for p in lparams)
    lopt.step()  # no gradients: nothing to do
    assert_close(lparams, tparams)


def test_param_group_validation_and_errors():
    params, _ = make_params()
    opt = optim.SGD(params[:2], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": params[2], "lr": 0.01})
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[1]["params"] == [params[2]]
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": params[:1]})
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(TypeError, match="iterable of Tensors or dicts"):
        optim.Adam(params[0])
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([params[0] * 2])
    for cls in (optim.SGD, optim.Adam, optim.AdamW, optim.RMSprop, optim.Adagrad):
        with pytest.raises(ValueError, match=r"^Invalid learning rate: -0.1$"):
            cls(params, lr=-0.1)
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum and zero dampening"):
        optim.SGD(params, nesterov=True)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1: 1.0"):
        optim.Adam(params, betas=(0.9, 1.0))


# ---- learning-rate schedulers -------------------------------------------------------------
def _opt_pair(kind: str = "SGD"):
    lparams, tparams = make_params()
    def groups(ps):
        return [{"params": ps[:1]}, {"params": ps[1:], "lr": 0.05}]
    if kind == "Adam":
        return optim.Adam(groups(lparams), lr=0.1), torch.optim.Adam(groups(tparams), lr=0.1)
    return optim.SGD(groups(lparams), lr=0.1, momentum=0.9), torch.optim.SGD(groups(tparams), lr=0.1, momentum=0.9)


def _both(lopt, topt, make):
    return make(sched, lopt), make(torch.optim.lr_scheduler, topt)


def _assert_same_lrs(lopt, topt, ls, ts) -> None:
    assert ls.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12, abs=1e-15)
    for lg, tg in zip(lopt.param_groups, topt.param_groups):
        assert lg["lr"] == pytest.approx(tg["lr"], rel=1e-12, abs=1e-15)
        for key in ("momentum", "betas"):
            if key in tg:
                assert lg[key] == pytest.approx(tg[key], rel=1e-12)


SCHEDULERS = {
    "StepLR": lambda m, o: m.StepLR(o, step_size=4, gamma=0.5),
    "MultiStepLR": lambda m, o: m.MultiStepLR(o, milestones=[3, 7, 7, 20], gamma=0.3),
    "ExponentialLR": lambda m, o: m.ExponentialLR(o, gamma=0.9),
    "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=10, eta_min=0.001),
    "LambdaLR": lambda m, o: m.LambdaLR(o, [lambda e: 0.95 ** e, lambda e: 1 / (1 + e)]),
    "LinearLR": lambda m, o: m.LinearLR(o, start_factor=0.2, end_factor=0.9, total_iters=12),
    "OneCycleLR-cos": lambda m, o: m.OneCycleLR(o, max_lr=[0.5, 0.2], total_steps=31),
    "OneCycleLR-linear-3phase": lambda m, o: m.OneCycleLR(o, max_lr=0.4, epochs=3, steps_per_epoch=11,
                                                          anneal_strategy="linear", three_phase=True,
                                                          pct_start=0.25, div_factor=10.0, final_div_factor=100.0,
                                                          base_momentum=0.8, max_momentum=0.9),
    "OneCycleLR-no-momentum": lambda m, o: m.OneCycleLR(o, max_lr=0.3, total_steps=31, cycle_momentum=False),
    "SequentialLR": lambda m, o: m.SequentialLR(o, [m.LinearLR(o, start_factor=0.1, total_iters=5),
                                                    m.CosineAnnealingLR(o, T_max=12),
                                                    m.ExponentialLR(o, gamma=0.8)], milestones=[5, 18]),
}


@pytest.mark.filterwarnings("ignore:Detected call of")  # torch: lr steps without training steps
@pytest.mark.parametrize("kind", ["SGD", "Adam"])
@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_scheduler_matches_torch(name, kind):
    lopt, topt = _opt_pair(kind)
    ls, ts = _both(lopt, topt, SCHEDULERS[name])
    _assert_same_lrs(lopt, topt, ls, ts)
    for _ in range(30):
        ls.step()
        ts.step()
        _assert_same_lrs(lopt, topt, ls, ts)
    assert ls.last_epoch == ts.last_epoch and hasattr(ls, "base_lrs") == hasattr(ts, "base_lrs")
    assert [g["initial_lr"] for g in lopt.param_groups] == pytest.approx([g["initial_lr"] for g in topt.param_groups])


@pytest.mark.parametrize("kwargs", [dict(), dict(mode="max", factor=0.5, patience=2, threshold=0.1, cooldown=2),
                                    dict(threshold_mode="abs", threshold=0.5, patience=1, min_lr=[0.02, 0.01]),
                                    dict(patience=0, factor=0.5, eps=0.02)])
def test_reduce_on_plateau_matches_torch(kwargs):
    lopt, topt = _opt_pair()
    ls, ts = _both(lopt, topt, lambda m, o: m.ReduceLROnPlateau(o, **kwargs))
    metrics = [10 - i if i < 5 else 5 + math.sin(i) * 0.3 for i in range(40)]
    for metric in metrics:
        ls.step(luban.tensor(metric))
        ts.step(metric)
        _assert_same_lrs(lopt, topt, ls, ts)


@pytest.mark.parametrize("name", ["StepLR", "CosineAnnealingLR", "LambdaLR", "OneCycleLR-cos", "SequentialLR"])
def test_scheduler_state_dict_resumes(name):
    lopt, _ = _opt_pair()
    ls = SCHEDULERS[name](sched, lopt)
    for _ in range(7):
        ls.step()
    saved_sched, saved_opt = ls.state_dict(), lopt.state_dict()
    expected = []
    for _ in range(10):
        ls.step()
        expected.append(ls.get_last_lr())

    lopt2, _ = _opt_pair()
    ls2 = SCHEDULERS[name](sched, lopt2)
    lopt2.load_state_dict(saved_opt)
    ls2.load_state_dict(saved_sched)
    got = []
    for _ in range(10):
        ls2.step()
        got.append(ls2.get_last_lr())
    assert got == expected


def test_scheduler_errors():
    lopt, _ = _opt_pair()
    with pytest.raises(TypeError, match="is not an Optimizer"):
        sched.StepLR(object(), step_size=2)
    with pytest.raises(KeyError, match="initial_lr"):
        sched.StepLR(lopt, step_size=2, last_epoch=3)
    with pytest.raises(ValueError, match="Factor should be < 1.0."):
        sched.ReduceLROnPlateau(lopt, factor=1.0)
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas, but got 1"):
        sched.LambdaLR(lopt, [lambda e: 1.0])
    with pytest.raises(ValueError, match="You must define either total_steps OR"):
        sched.OneCycleLR(lopt, max_lr=0.1)
    one = sched.OneCycleLR(lopt, max_lr=0.1, total_steps=2)
    one.step()
    one.step()
    with pytest.raises(ValueError, match="Tried to step 3 times"):
        one.step()
