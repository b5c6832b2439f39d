"""Frontend ops that are compositions too large to sit in tensor.py."""
