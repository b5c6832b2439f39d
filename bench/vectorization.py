"""Which inner loops of the benchmark workloads' generated cpu kernels the C compiler
vectorized, from its own report (luban/runtime/vectorization.py; needs gcc).

    python bench/vectorization.py [--only W1,W3] [--out FILE]

Runs two steps of each workload in luban on the cpu device, collects every kernel it
rendered (GEMM epilogues over blocks included), and writes a table per workload: inner
loops, those that read a kernel input, how many of each the compiler vectorized, and
each loop it did not vectorize with the compiler's reason. Written to
bench/results/<date>-<host>-vectorization.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import socket
import sys

os.environ.setdefault("OMP_NUM_THREADS", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

WORKLOADS = ("W1", "W2", "W3", "W4")


def rendered_sources(key: str, steps: int = 2) -> dict:
    """{kernel function name: C source} of every kernel rendered while running `steps`
    steps of workload `key` in a fresh in-process program cache."""
    import importlib

    from bench.workloads.adapter import load
    module = {"W1": "w1_mlp", "W2": "w2_cnn", "W3": "w3_gpt", "W4": "w4_bert"}[key]
    from luban.schedule import run as schedule_run
    got = {}
    wrapped = {}
    for attr in ("_render", "_render_block"):
        orig = wrapped[attr] = getattr(schedule_run, attr)

        def capture(*args, _orig=orig):
            r = _orig(*args)
            if r is not None:
                got[r.name] = r.source
            return r
        setattr(schedule_run, attr, capture)
    saved = dict(schedule_run._programs)
    schedule_run._programs.clear()  # so kernels an earlier workload compiled render again
    try:
        w = importlib.import_module("bench.workloads." + module).build(load("luban"))
        for _ in range(steps):
            w.step()
    finally:
        for attr, orig in wrapped.items():
            setattr(schedule_run, attr, orig)
        schedule_run._programs.update(saved)
    return got


def table(key: str, sources: dict, flags) -> tuple[list, list]:
    """(summary row, lines naming each loop not vectorized) for one workload."""
    from luban.runtime import vectorization
    total = reading = vec = vec_reading = 0
    missed = []
    for name in sorted(sources):
        for loop in vectorization.report(sources[name], flags):
            total += 1
            reading += loop.reads_input
            vec += loop.vectorized
            vec_reading += loop.vectorized and loop.reads_input
            if not loop.vectorized:
                missed.append(f"| {key} | `{name}` | `{loop.header}` | {'yes' if loop.reads_input else 'no'} | "
                              f"{loop.reason} |")
    return [key, len(sources), total, vec, reading, vec_reading], missed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads (W1..W4)")
    ap.add_argument("--out", default=None, help="output file (default bench/results/<date>-<host>-vectorization.md)")
    args = ap.parse_args()
    from luban.runtime import compile_cache
    from luban.runtime.cpu import compile_flags
    flags = compile_flags()
    rows, missed = [], []
    for key in args.only.split(","):
        row, miss = table(key, rendered_sources(key), flags)
        rows.append(row)
        missed += miss
        print(f"{key}: {row[1]} kernels, {row[3]}/{row[2]} inner loops vectorized "
              f"({row[5]}/{row[4]} of those reading an input)", flush=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    out = args.out or os.path.join(ROOT, "bench", "results",
                                   f"{now:%Y-%m-%d}-{socket.gethostname()}-vectorization.md")
    version = compile_cache.compiler_version().splitlines()
    lines = [f"# Vectorized inner loops of luban's cpu kernels — {now:%Y-%m-%d %H:%M} UTC", "",
             f"Command: `python bench/vectorization.py --only {args.only}`. Compiler: {version[1] if len(version) > 1 else version[0]}; "
             f"flags: `{' '.join(flags)}`. The compiler's own report (`-fopt-info-vec-all`) judges each "
             "innermost loop of every kernel two steps of the workload rendered.", "",
             "| workload | kernels | inner loops | vectorized | reading an input | of those vectorized |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {' | '.join(map(str, r))} |" for r in rows]
    lines += ["", "Inner loops not vectorized (a loop reading no input fills an accumulator or an output "
              "with zeros; the compiler often turns it into memset):", "",
              "| workload | kernel | loop | reads an input | compiler's reason |", "|---|---|---|---|---|"]
    lines += missed
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, out)
    print("wrote", out)


if __name__ == "__main__":
    main()
