"""graflow-async benchmarks: `make bench` (python -m benchmarks)."""
