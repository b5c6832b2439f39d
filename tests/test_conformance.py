"""The conformance kit itself: it must catch a wrong device, exit non-zero, count the
same cases on every device that claims the same dtypes, and run a device that lacks a
capability on what it claims. (`make test` runs the full kit on every device.)"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import luban

from luban import conformance
from luban.conformance.cases import op_cases
from luban.runtime import register_device, usable_devices
from luban.runtime.numpy import NumpyDevice

REPO = Path(__file__).resolve().parents[1]


class BrokenDevice(NumpyDevice):
    """The reference device with one flaw: every kernel corrupts the 4th byte of its output
    (a float32's exponent), as a miscompiled kernel might."""
    name = "broken"

    def compile(self, source, name):
        def program(bufs):
            source(bufs)
            if bufs[0].size >= 4:
                bufs[0][3] ^= 0x40
        return program


@pytest.fixture
def broken(monkeypatch):
    """Registers the broken device for one test, as a vendor's plug-in would."""
    from luban import runtime
    monkeypatch.setattr(runtime, "_FACTORIES", dict(runtime._FACTORIES))
    monkeypatch.setattr(runtime, "_INSTANCES", dict(runtime._INSTANCES))
    register_device("broken", __name__, "BrokenDevice")
    return "broken"


def test_kit_catches_a_wrong_device_and_says_where(broken, capsys):
    assert conformance.main(["--device", "broken", "--area", "unary,shape"]) == 1
    out = capsys.readouterr().out
    passed, failed = map(int, re.search(r"^(\d+) passed, (\d+) failed$", out, re.M).groups())
    assert failed > 0 and passed + failed == sum(c.area in ("unary", "shape") for c in op_cases())
    assert re.search(r"^FAILED unary/exp\[float32\]: output 0: \d+ of 15 values differ", out, re.M), out


def test_reference_passes_and_counts_every_case():
    report = conformance.run("numpy", "numpy", ("unary", "cast", "random"))
    assert report.n_failed == 0, report.table()
    assert report.n_passed == sum(c.area in ("unary", "cast", "random") for c in op_cases())


def test_unknown_device_and_capability_are_clear_errors(broken, capsys):
    assert conformance.main(["--device", "nosuch"]) == 2
    assert "unknown device 'nosuch'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a dtype or a capability"):
        conformance.restrict("broken", ["warp_size"])


@pytest.mark.parametrize("device", [d for d in usable_devices() if d != "numpy"])
def test_device_without_float64_and_local_memory_passes_on_what_it_claims(device):
    """Run in a fresh process: taking capabilities away changes how kernels are rendered."""
    areas = "reduce,linalg"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "luban.conformance", "--device", device, "--area", areas,
           "--without", "float64,local_memory"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    passed, failed = map(int, re.search(r"^(\d+) passed, (\d+) failed$", proc.stdout, re.M).groups())
    needing_f64 = sum(c.area in areas.split(",") and "float64" in c.needs() for c in op_cases())
    total = sum(c.area in areas.split(",") for c in op_cases())
    assert failed == 0 and needing_f64 > 0 and passed == total - needing_f64, proc.stdout
    assert f"{needing_f64} cases need dtypes this device does not claim" in proc.stdout
    assert "taken away: float64, local_memory" in proc.stdout


class NoFloat64Device(NumpyDevice):
    name = "nof64"
    dtypes = NumpyDevice.dtypes - {luban.float64}


def test_unclaimed_dtype_is_a_clear_error(monkeypatch):
    from luban import runtime
    monkeypatch.setattr(runtime, "_FACTORIES", dict(runtime._FACTORIES))
    monkeypatch.setattr(runtime, "_INSTANCES", dict(runtime._INSTANCES))
    register_device("nof64", __name__, "NoFloat64Device")
    with pytest.raises(TypeError, match=r"device 'nof64' does not support float64 \(it claims .*float32"):
        luban.tensor([1.0, 2.0], dtype=luban.float64, device="nof64")
    with pytest.raises(TypeError, match="does not support float64"):  # made on the device, not uploaded
        luban.zeros(3, dtype=luban.float64, device="nof64").numpy()
    x = luban.tensor([1.5, 2.5], device="nof64")
    assert (x * 2).tolist() == [3.0, 5.0]  # what it claims still works
