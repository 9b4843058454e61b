"""Run Alembic programmatically (used by `dashtam migrate`, start-up in development, and tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

_REPO_ROOT = Path(__file__).resolve().parents[3]


def _script_location() -> Path:
    # Source checkouts keep migrations at the top level; the wheel ships them as package data.
    for candidate in (_REPO_ROOT / "alembic", Path(__file__).resolve().parents[1] / "alembic"):
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError("alembic migrations directory not found")


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at our migrations and the given database."""
    config = Config()
    config.set_main_option("script_location", str(_script_location()))
    config.set_main_option("path_separator", "os")
    config.attributes["database_url"] = database_url
    return config


def upgrade_to_head(database_url: str, revision: str = "head") -> None:
    """Apply migrations up to `revision` (blocking: call from a thread inside async code)."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    """Revert migrations down to `revision`."""
    command.downgrade(alembic_config(database_url), revision)


def head_revision() -> str | None:
    """The newest revision in the migration chain."""
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None when it was never migrated)."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(read)


async def schema_problem(engine: AsyncEngine) -> str | None:
    """Explain why the schema does not match the code, or None when it does."""
    head = head_revision()
    current = await current_revision(engine)
    if current == head:
        return None
    return (
        f"the database schema is at revision {current or 'none'} but this code expects {head}: "
        "run `dashtam migrate` (or `make migrate`) first"
    )
