"""Benchmark workloads. Each module defines `build(fw, quick) -> Workload`, written once
against the torch-shaped API that luban mirrors; `fw` is the adapter from adapter.py."""
WORKLOADS = ["W1", "W2", "W3", "W4", "MM"]
