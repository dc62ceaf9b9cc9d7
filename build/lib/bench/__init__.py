"""Benchmarks: they print figures; tests never assert timings."""
