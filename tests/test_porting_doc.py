"""docs/porting.md stays true: its worked example is a working device that passes the
conformance kit, and its line counts are the files' real ones."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "porting.md"


def count_lines(text: str) -> int:
    """Non-blank lines that are not Python comments (C directives like #define count)."""
    return sum(1 for line in text.splitlines() if line.strip() and not re.match(r"\s*#(\s|$)", line))


def example_files() -> dict:
    blocks = re.findall(r"```python\n# file: (\S+)\n(.*?)```", DOC.read_text(), re.S)
    return {name: body for name, body in blocks}


def test_line_count_table_is_current():
    table = DOC.read_text().split("<!-- line-counts -->")[1].split("<!-- /line-counts -->")[0]
    rows = re.findall(r"\| `([^`]+)`[^|]* \| (\d+) \|", table)
    assert len(rows) >= 6, table
    for path, n in rows:
        assert count_lines((REPO / path).read_text()) == int(n), f"docs/porting.md: update the count of {path}"


def test_worked_example_counts_are_current():
    files = example_files()
    assert set(files) == {"serialc_codegen.py", "serialc_device.py"}
    text = DOC.read_text()
    dialect, device = (count_lines(files[f]) for f in ("serialc_codegen.py", "serialc_device.py"))
    assert f"the dialect file is\n{dialect} lines, the device file is {device}." in text, (dialect, device)


def test_worked_example_device_passes_conformance(tmp_path):
    for name, body in example_files().items():
        (tmp_path / name).write_text(body)
    script = ("import sys\nfrom luban.runtime import register_device\nfrom luban import conformance\n"
              "register_device('serialc', 'serialc_device', 'SerialCDevice')\n"
              "sys.exit(conformance.main(['--device', 'serialc', '--area', 'unary,reduce,index,linalg,edge,models']))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"^\d+ passed, 0 failed$", proc.stdout, re.M), proc.stdout
