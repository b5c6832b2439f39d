"""Runs the conformance cases on a device against a reference device and reports."""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field

import numpy as np

import luban
from luban import dtypes
from luban.runtime import get_device

from .cases import DOMAINS, FLOATS, Case, Input, op_cases
from .models import MODELS

# how far a device may differ from the reference, relative and absolute, by output dtype:
# math functions may differ by an ulp or two and sums may run in another order
TOLERANCE = {"float64": 1e-9, "float32": 2e-5, "float16": 4e-3, "bfloat16": 3e-2}
GRAD_FACTOR = 10  # gradients chain several rounded ops
MODEL_RTOL = 1e-3  # 20 training steps let float32 rounding differences grow a little
AREAS = ("unary", "binary", "cast", "reduce", "shape", "index", "linalg", "nn", "random", "edge", "models")


@dataclass
class Report:
    device: str
    reference: str
    passed: dict = field(default_factory=dict)  # area -> count
    failed: dict = field(default_factory=dict)  # area -> [(case name, why)]
    unclaimed: dict = field(default_factory=dict)  # area -> count of cases needing unclaimed dtypes
    seconds: float = 0.0

    @property
    def n_passed(self) -> int:
        return sum(self.passed.values())

    @property
    def n_failed(self) -> int:
        return sum(len(v) for v in self.failed.values())

    def table(self) -> str:
        rows = [f"{'area':<8} {'passed':>7} {'failed':>7} {'not claimed':>12}"]
        for area in AREAS:
            if area in self.passed or area in self.failed or area in self.unclaimed:
                rows.append(f"{area:<8} {self.passed.get(area, 0):>7} {len(self.failed.get(area, [])):>7} "
                            f"{self.unclaimed.get(area, 0):>12}")
        for area, fails in self.failed.items():
            rows += [f"FAILED {area}/{name}: {why}" for name, why in fails]
        return "\n".join(rows)


def restrict(name: str, without) -> None:
    """Take dtypes or capabilities away from a device, to check that it then passes on
    what it still claims (a vendor's device may lack float64 or local memory)."""
    dev = get_device(name)
    for item in without:
        if item in dtypes._BY_NAME:
            dev.dtypes = frozenset(dev.dtypes) - {dtypes._BY_NAME[item]}
            if item == "float64":
                dev.caps = {**dev.caps, "float64": False}
        elif item in dev.caps or item in ("local_memory", "float64"):
            dev.caps = {**dev.caps, item: 0}
        else:
            raise ValueError(f"--without {item!r}: not a dtype or a capability of device {name} "
                             f"(capabilities: {sorted(dev.caps)})")


def run(device: str, reference: str = "numpy", areas=AREAS, log=None) -> Report:
    claimed = {d.name for d in get_device(device).dtypes} & {d.name for d in get_device(reference).dtypes}
    report, t0 = Report(device, reference), time.perf_counter()
    for case in op_cases():
        if case.area not in areas:
            continue
        if not case.needs() <= claimed:
            report.unclaimed[case.area] = report.unclaimed.get(case.area, 0) + 1
            continue
        why = _check(case, device, reference)
        _record(report, case.area, case.name, why, log)
    if "models" in areas:
        needed = {"float32", "int64", "bool"}
        for name, build in MODELS.items():
            if not needed <= claimed:
                report.unclaimed["models"] = report.unclaimed.get("models", 0) + 1
                continue
            _record(report, "models", name, _check_model(build, device, reference), log)
    report.seconds = time.perf_counter() - t0
    return report


def _record(report: Report, area: str, name: str, why: str | None, log) -> None:
    if why is None:
        report.passed[area] = report.passed.get(area, 0) + 1
    else:
        report.failed.setdefault(area, []).append((name, why))
    if log is not None:
        log(f"{'ok  ' if why is None else 'FAIL'} {area}/{name}" + ("" if why is None else f": {why}"))


# --- one op case ----------------------------------------------------------------------

def _check(case: Case, device: str, reference: str) -> str | None:
    rng = np.random.default_rng(zlib.crc32(f"{case.area}/{case.name}".encode()))
    arrays = [_draw(inp, rng) for inp in case.inputs]
    try:
        want = _evaluate(case, reference, arrays)
    except Exception as e:  # noqa: BLE001 - the reference must run every case
        if case.raises is not None and isinstance(e, case.raises):
            want = e
        else:
            return f"the reference device {reference} raised {type(e).__name__}: {e}"
    if case.raises is not None and not isinstance(want, BaseException):
        return f"the reference device {reference} did not raise {case.raises.__name__}"
    try:
        got = _evaluate(case, device, arrays)
    except Exception as e:  # noqa: BLE001 - any error is a finding, not a crash of the kit
        if case.raises is not None and isinstance(e, case.raises):
            return None
        return f"raised {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
    if case.raises is not None:
        return f"did not raise {case.raises.__name__}"
    return _compare(got, want, case.tol)


def _draw(inp: Input, rng) -> np.ndarray:
    arr = np.asarray(DOMAINS[inp.domain](rng, _base_shape(inp)))
    return arr.astype(getattr(luban, inp.dtype).np)


def _base_shape(inp: Input) -> tuple:
    s = inp.shape
    if inp.view == "permuted":
        return s[::-1]
    if inp.view == "sliced":
        return s[:-1] + (2 * s[-1] + 1,)
    if inp.view == "expanded":
        return (1,) + s[1:]
    return s


def _view(t, inp: Input):
    if inp.view == "permuted":
        return t.permute(*reversed(range(t.ndim)))
    if inp.view == "sliced":
        return t[..., 1::2]
    if inp.view == "expanded":
        return t.expand(*inp.shape)
    return t


def _evaluate(case: Case, device: str, arrays: list) -> tuple:
    """(values, dtype names, input gradients) of the case on `device`."""
    luban.set_default_device(device)
    try:
        leaves = []
        for inp, arr in zip(case.inputs, arrays):
            grad = case.grad and inp.grad and inp.dtype in FLOATS
            leaves.append(luban.tensor(arr, dtype=getattr(luban, inp.dtype), device=device, requires_grad=grad))
        out = case.fn(*[_view(t, inp) for t, inp in zip(leaves, case.inputs)])
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        values = [o.numpy() for o in outs]
        grads = []
        if case.grad:
            rng = np.random.default_rng(zlib.crc32(case.name.encode()) + 1)
            loss = None
            for o in outs:
                if o.dtype.is_float:
                    term = (o * luban.tensor(rng.standard_normal(o.shape), dtype=o.dtype)).sum()
                    loss = term if loss is None else loss + term
            loss.backward()
            grads = [t.grad.numpy() if t.grad is not None else None for t in leaves if t.requires_grad]
        return values, [o.dtype.name for o in outs], grads
    finally:
        luban.set_default_device(None)


def _compare(got: tuple, want: tuple, tol: float | None) -> str | None:
    (gv, gd, gg), (wv, wd, wg) = got, want
    if gd != wd:
        return f"dtypes {gd}, reference {wd}"
    for k, (g, w) in enumerate(zip(gv, wv)):
        why = _close(g, w, gd[k], tol)
        if why:
            return f"output {k}: {why}"
    for k, (g, w) in enumerate(zip(gg, wg)):
        if (g is None) != (w is None):
            return f"gradient of input {k}: {'missing' if g is None else 'unexpected'}"
        why = None if g is None else _close(g, w, str(w.dtype), None if tol is None else tol, GRAD_FACTOR)
        if why:
            return f"gradient of input {k}: {why}"
    return None


def _close(g: np.ndarray, w: np.ndarray, dtype: str, tol: float | None, factor: float = 1) -> str | None:
    if g.shape != w.shape:
        return f"shape {g.shape}, reference {w.shape}"
    if dtype not in TOLERANCE:  # integers and bool: exact
        if not np.array_equal(g, w):
            return f"values differ at {int((g != w).sum())} of {g.size} positions"
        return None
    t = (TOLERANCE[dtype] if tol is None else tol) * factor
    with np.errstate(invalid="ignore"):
        g64, w64 = g.astype(np.float64), w.astype(np.float64)
        ok = np.isclose(g64, w64, rtol=t, atol=t, equal_nan=True)
    if not ok.all():
        bad = np.argwhere(~ok)[0]
        return (f"{int((~ok).sum())} of {g.size} values differ beyond {t:g}, e.g. at {tuple(int(i) for i in bad)}: "
                f"{g64[tuple(bad)]!r} vs reference {w64[tuple(bad)]!r}")
    return None


# --- model-level checks --------------------------------------------------------------------

def _check_model(build, device: str, reference: str) -> str | None:
    losses = {}
    for dev in (reference, device):
        luban.set_default_device(dev)
        try:
            losses[dev] = np.array(build())
        except Exception as e:  # noqa: BLE001
            return f"{'reference ' if dev == reference else ''}{dev} raised {type(e).__name__}: {e}"
        finally:
            luban.set_default_device(None)
    got, want = losses[device], losses[reference]
    if not want[-1] < want[0]:
        return f"the loss did not decrease on the reference ({want[0]:.4f} -> {want[-1]:.4f})"
    if not np.allclose(got, want, rtol=MODEL_RTOL, atol=MODEL_RTOL):
        k = int(np.argmax(np.abs(got - want)))
        return f"losses differ from step {k}: {got[k]:.6f} vs reference {want[k]:.6f}"
    return None
