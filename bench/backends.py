"""Prepare the stores a Dashtam process runs on: a fresh embedded SQLite, or a reset PostgreSQL.

`postgres` drops and re-creates `BENCH_DATABASE_URL`'s database, flushes `BENCH_REDIS_URL`'s
Redis database, and migrates with `python -m dashtam migrate`. Each scenario gets fresh stores,
so one scenario's data never slows another.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from bench.tools import REPO_ROOT

BACKENDS = ("embedded", "postgres")
DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/dashtam_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
_SAFE_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class BackendError(RuntimeError):
    """The stores could not be prepared."""


def settings_env_names() -> frozenset[str]:
    """Environment variables Dashtam's `Settings` reads (upper-cased field names)."""
    from dashtam.core.config import Settings

    return frozenset(name.upper() for name in Settings.model_fields)


def clean_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment minus anything Dashtam would read as a setting.

    A developer's exported `DATABASE_URL` or `PORT` must not leak into a measurement.
    """
    names = settings_env_names()
    return {key: value for key, value in environ.items() if key.upper() not in names}


def postgres_urls() -> tuple[str, str]:
    """`(database URL, Redis URL)` for the postgres backend, from the environment or defaults."""
    return (
        os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
    )


def check_bench_database_name(url: str) -> str:
    """The database name of `url`, refusing names that do not look like a scratch database.

    The harness drops this database, so a mistyped URL must not point at real data.

    Raises:
        BackendError: When the name is missing, unsafe to quote, or lacks `bench`.
    """
    from sqlalchemy.engine import make_url

    name = make_url(url).database or ""
    if not _SAFE_DB_NAME.match(name) or "bench" not in name:
        raise BackendError(
            f"refusing to reset database {name!r}: BENCH_DATABASE_URL must name a scratch "
            "database whose name contains 'bench' (lower-case letters, digits, underscores)"
        )
    return name


async def _reset_postgres(url: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    name = check_bench_database_name(url)
    connection = await asyncpg.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        user=parsed.username or "postgres",
        password=parsed.password,
        database="postgres",
        timeout=10,
    )
    try:
        # The name is checked against a strict pattern above, so quoting it is enough.
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def _flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        db = client.connection_pool.connection_kwargs.get("db", 0)
        if int(db) == 0:
            raise BackendError("refusing to flush Redis database 0: use a scratch one (…/14)")
        client.flushdb()
    finally:
        client.close()


def prepare(backend: str, workdir: Path) -> dict[str, str]:
    """Create fresh stores for one scenario and migrate them.

    Args:
        backend: `embedded` or `postgres`.
        workdir: The scenario's scratch directory (its `var/` becomes Dashtam's `VAR_DIR`).

    Returns:
        Environment variables pointing Dashtam at the stores.

    Raises:
        BackendError: When a store cannot be reset or the migration fails.
    """
    var_dir = workdir / "var"
    var_dir.mkdir(parents=True, exist_ok=True)
    env = {"VAR_DIR": str(var_dir.resolve())}
    if backend == "postgres":
        database_url, redis_url = postgres_urls()
        try:
            asyncio.run(_reset_postgres(database_url))
            _flush_redis(redis_url)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"cannot reset the postgres backend: {exc}") from exc
        env |= {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
    elif backend != "embedded":
        raise BackendError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    migrate(env)
    return env


def migrate(store_env: Mapping[str, str]) -> None:
    """Run `python -m dashtam migrate` against the given stores.

    Raises:
        BackendError: With the command's output when it fails.
    """
    env = clean_environment(os.environ) | dict(store_env)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "dashtam", "migrate"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BackendError("`dashtam migrate` did not finish within 300 s") from exc
    if done.returncode != 0:
        raise BackendError(f"`dashtam migrate` failed:\n{(done.stdout + done.stderr)[-3000:]}")
