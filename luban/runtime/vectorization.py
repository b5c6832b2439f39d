"""Which loops of a generated C kernel the C compiler vectorized, from its own report
(gcc's -fopt-info-vec-all): luban's cpu kernels count on the compiler to vectorize
their inner loops, and this is how a developer (bench/vectorization.py) or a test
checks that it did, instead of trusting that it should.

Only the innermost loops are judged: the generated outer loops are parallel or row
loops that are not meant to vectorize. A report is matched to a loop by line: gcc
places an `omp simd` loop's report on its pragma or body, a plain loop's on its header.
"""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import tempfile

from . import compile_cache

_FOR = re.compile(r"\s*for \(")
_REPORT = re.compile(r"^<stdin>:(\d+):(\d+): (optimized|missed): (.*)$")
_NEST = ("not vectorized: loop nest", "not vectorized: multiple nested loops")
NO_REPORT = "no report (turned into a library call such as memset, or unrolled away)"


@dataclasses.dataclass(frozen=True)
class Loop:
    """An innermost loop: its header's line (1-based), the lines it spans (pragma to
    closing brace), its header's text, whether it reads a kernel input (in0, in1, ...),
    whether the compiler vectorized it, and why not where it did not."""
    line: int
    first: int
    last: int
    header: str
    reads_input: bool
    vectorized: bool = False
    reason: str = ""


def innermost_loops(source: str) -> list[Loop]:
    """The innermost `for` loops of C source in the layout luban's renderer writes (one
    statement a line, a block closed at its opener's indentation)."""
    lines = source.split("\n")
    indent = lambda s: len(s) - len(s.lstrip())
    loops = []
    for i, text in enumerate(lines):
        if not _FOR.match(text):
            continue
        end = len(lines) - 1
        for j in range(i + 1, len(lines)):
            if lines[j].strip() and indent(lines[j]) <= indent(text):
                end = j
                break
        body = lines[i + 1:end]
        if any(_FOR.match(b) for b in body):
            continue
        first = i if i > 0 and lines[i - 1].strip().startswith("#pragma omp simd") else i + 1
        loops.append(Loop(i + 1, first, end + 1, text.strip(), any(re.search(r"\bin\d+\[", b) for b in body)))
    return loops


def report(source: str, flags) -> list[Loop]:
    """innermost_loops(source), each marked vectorized or not (with gcc's reason), as
    the compiler builds the source with `flags` (the device's). Needs gcc: its
    -fopt-info is the report read here."""
    cc = compile_cache.compiler()
    if "gcc" not in compile_cache.compiler_version().lower():
        raise compile_cache.CompileError(f"vectorization reports need gcc (-fopt-info-vec-all); the C compiler "
                                         f"is {' '.join(cc)}: set CC=gcc")
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.run([*cc, *flags, "-fopt-info-vec-all", "-x", "c", "-", "-o", os.path.join(d, "k.so")],
                              input=source, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise compile_cache.CompileError(f"compiling a kernel for its vectorization report failed:\n{proc.stderr}")
    found = [(int(m[1]), m[2], m[3], m[4]) for m in map(_REPORT.match, proc.stderr.splitlines()) if m]
    # a loop nest's report is an outer loop's, placed on its first statement: maybe inside
    # an innermost loop, which it does not judge
    nests = {(line, col) for line, col, kind, msg in found if msg.startswith(_NEST)}
    found = [(line, kind, msg) for line, col, kind, msg in found if (line, col) not in nests]
    out = []
    for loop in innermost_loops(source):
        mine = [(kind, msg) for line, kind, msg in found if loop.first <= line <= loop.last]
        missed = [msg for kind, msg in mine if kind == "missed"]
        if any(kind == "optimized" and msg.startswith("loop vectorized") for kind, msg in mine):
            out.append(dataclasses.replace(loop, vectorized=True))
        else:  # gcc's reason where it gave one, else its bare "couldn't vectorize"
            why = next((msg for msg in missed if msg.startswith("not vectorized")), missed[0] if missed else NO_REPORT)
            out.append(dataclasses.replace(loop, reason=why))
    return out
