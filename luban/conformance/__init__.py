"""The conformance kit: `python -m luban.conformance --device NAME`.

Every case (cases.py: each op in every claimed dtype, forward and gradient, random
numbers, edge cases; models.py: three small models trained 20 steps) runs on the device
and on a reference device (`numpy`; for `numpy` itself, `cpu`), and must agree. Prints a
table per area and a final line `N passed, M failed`; exits non-zero on any failure.
docs/porting.md tells a vendor how to get from nothing to a passing run.
"""
from __future__ import annotations

import argparse
import sys

from .runner import AREAS, Report, restrict, run

__all__ = ["main", "run", "restrict", "Report", "AREAS"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m luban.conformance", description=__doc__.splitlines()[0])
    parser.add_argument("--device", required=True, help="the device to check, e.g. cpu, opencl")
    parser.add_argument("--reference", default=None, help="the device it must agree with (default numpy)")
    parser.add_argument("--without", default="", help="comma-separated dtypes or capabilities to take away "
                        "from the device first (e.g. float64,local_memory), to check it passes on what is left")
    parser.add_argument("--area", default=",".join(AREAS), help=f"comma-separated subset of: {', '.join(AREAS)}")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every case as it runs")
    args = parser.parse_args(argv)

    from luban.runtime import get_device
    reference = args.reference or ("cpu" if args.device == "numpy" else "numpy")
    areas = tuple(a for a in args.area.split(",") if a)
    unknown = [a for a in areas if a not in AREAS]
    if unknown:
        parser.error(f"unknown area(s) {unknown}; choose from {', '.join(AREAS)}")
    try:
        dev = get_device(args.device)
        get_device(reference)
    except Exception as e:  # noqa: BLE001 - a device that cannot start is a clear message, not a traceback
        print(f"cannot start device: {e}", file=sys.stderr)
        return 2
    without = [w for w in args.without.split(",") if w]
    if without:
        restrict(args.device, without)
    print(f"luban conformance: device {args.device} against reference {reference}")
    print(f"  claims dtypes: {', '.join(sorted(d.name for d in dev.dtypes))}")
    print(f"  capabilities: {dict(dev.caps) or 'none'}" + (f" (taken away: {', '.join(without)})" if without else ""))
    report = run(args.device, reference, areas, log=print if args.verbose else None)
    print(report.table())
    unclaimed = sum(report.unclaimed.values())
    if unclaimed:
        print(f"{unclaimed} cases need dtypes this device does not claim: not run, not counted")
    print(f"took {report.seconds:.1f} s")
    print(f"{report.n_passed} passed, {report.n_failed} failed")
    return 1 if report.n_failed else 0
