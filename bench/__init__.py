"""Benchmarks (``make bench`` / ``python -m bench``).

Each benchmark module exposes ``NAME`` and ``run(options) -> list[Row]``; :mod:`bench.__main__`
runs them in sequence and prints one results table.
"""
