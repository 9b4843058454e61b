"""Backend preparation guards: no leaked settings, no dropping of a non-scratch database."""

from __future__ import annotations

import pytest
from bench.backends import BackendError, check_bench_database_name, clean_environment


class TestCleanEnvironment:
    def test_drops_every_dashtam_setting_and_keeps_the_rest(self) -> None:
        env = {
            "DATABASE_URL": "postgresql://prod/db",
            "redis_url": "redis://x",
            "PORT": "80",
            "SECRET_KEY": "s",
            "PATH": "/usr/bin",
            "BENCH_DATABASE_URL": "postgresql://h/dashtam_bench",
        }
        assert clean_environment(env) == {
            "PATH": "/usr/bin",
            "BENCH_DATABASE_URL": "postgresql://h/dashtam_bench",
        }


class TestDatabaseName:
    def test_scratch_names_pass(self) -> None:
        url = "postgresql+asyncpg://postgres@127.0.0.1:5432/dashtam_bench"
        assert check_bench_database_name(url) == "dashtam_bench"

    @pytest.mark.parametrize(
        "url",
        [
            "postgresql+asyncpg://postgres@127.0.0.1/dashtam",
            "postgresql+asyncpg://postgres@127.0.0.1/",
            'postgresql+asyncpg://postgres@127.0.0.1/bench"; DROP',
            "postgresql+asyncpg://postgres@127.0.0.1/Bench",
        ],
    )
    def test_other_names_are_refused(self, url: str) -> None:
        with pytest.raises(BackendError, match="refusing to reset"):
            check_bench_database_name(url)
