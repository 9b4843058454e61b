"""Dashtam's benchmark harness: each scenario is measured against a reference in the same run.

Run it with `python -m bench` (or `make bench`); see `bench/README.md`.
"""
