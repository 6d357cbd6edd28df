"""Benchmarks: ``python -m rt4ksr.benchmark`` (inference speed) and ``... benchmark data`` (data side)."""
