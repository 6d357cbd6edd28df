"""Benchmarks: ``python -m rt4ksr.benchmark data`` (loader and degradation throughput)."""
