"""Shared builders for the bench unit tests."""

from __future__ import annotations

from pathlib import Path

from bench.runner import RunConfig


def run_config(tmp_path: Path, *, duration_s: int = 10) -> RunConfig:
    """A run's settings with its files under `tmp_path` and made-up secrets."""
    return RunConfig(
        duration_s=duration_s,
        warmup_s=3,
        connections=50,
        threads=2,
        backend="embedded",
        environment="development",
        results_dir=tmp_path / "results",
        certs_dir=tmp_path / "certs",
        secrets={"SECRET_KEY": "fresh-secret", "ENCRYPTION_KEYS": "bench:key"},
    )
