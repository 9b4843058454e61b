"""Async engines and the unit-of-work session.

One `AsyncSession` per request (or job): `session_scope` commits when the block succeeds and
rolls back when it raises; services only `flush()`. SQLite is tuned for safe concurrency (WAL,
busy timeout, foreign keys) and every transaction starts with `BEGIN IMMEDIATE`, because the
driver's default of opening no transaction before a SELECT silently loses read-then-write
updates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import greenlet_spawn

from dashtam.core.config import Settings
from dashtam.core.logging import log_event

logger = logging.getLogger(__name__)

SessionFactory = async_sessionmaker[AsyncSession]
AfterCommitHook = Callable[[], Any]

_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=5000",
)


def _install_sqlite_hooks(engine: AsyncEngine, *, foreign_keys: bool) -> None:
    """Apply pragmas per connection and take the write lock at BEGIN."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy so our explicit BEGIN is the only one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    @event.listens_for(engine.sync_engine, "close")
    def _on_close(dbapi_connection: Any, _record: Any) -> None:
        # A task cancelled mid-statement gets its connection invalidated and closed without a
        # rollback. Python's sqlite3 closes with sqlite3_close_v2, which keeps a connection
        # whose interrupted statement is still referenced (by the cancelled traceback) alive
        # as a zombie, transaction and write lock included, until the garbage collector
        # frees that cursor: every other writer meanwhile fails with "database is locked".
        # Rolling back first releases the lock at once (SQLite aborts the pending read).
        try:
            dbapi_connection.rollback()
        except Exception as exc:  # the close that follows releases whatever it still can
            log_event(
                logger,
                "database.rollback_before_close_failed",
                logging.DEBUG,
                error_type=type(exc).__name__,
            )


def create_engine(
    url: str, settings: Settings, *, foreign_keys: bool = True, **overrides: Any
) -> AsyncEngine:
    """Build an async engine for `url` with the backend-specific tuning.

    Args:
        url: SQLAlchemy URL (`postgresql+asyncpg://…` or `sqlite+aiosqlite:///…`).
        settings: Pool sizes and timeouts come from here.
        foreign_keys: SQLite only; migrations turn enforcement off while rebuilding tables.
        **overrides: Extra `create_async_engine` keyword arguments.

    Returns:
        The configured engine.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            echo=settings.db_echo,
            connect_args={"timeout": 5},
            **overrides,
        )
        _install_sqlite_hooks(engine, foreign_keys=foreign_keys)
        return engine
    options: dict[str, Any] = {
        "echo": settings.db_echo,
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout,
        # No pre-ping: it costs a round trip on every checkout (~11% of a cached-auth read).
        # A connection that died with the server fails once (503), SQLAlchemy then invalidates
        # the whole pool, and the next checkout reconnects; `pool_recycle` retires old ones.
        "pool_pre_ping": False,
        "pool_recycle": 1800,
        # A dead server must fail fast (health answers 503 within 2 s), not hang.
        "connect_args": {
            "timeout": settings.db_connect_timeout,
            "command_timeout": 30,
            "server_settings": {"application_name": "dashtam", "timezone": "UTC"},
        },
    }
    options.update(overrides)
    return create_async_engine(url, **options)


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    """Sessions that keep loaded objects usable after commit (no implicit refresh I/O)."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def create_read_session_factory(engine: AsyncEngine) -> SessionFactory | None:
    """Autocommit sessions for one-statement reads, sharing the engine's pool (PostgreSQL).

    A lone SELECT needs no transaction; skipping BEGIN/COMMIT saves two round trips on every
    authenticated request. SQLite returns None: its reads stay in ordinary units of work.
    """
    if engine.dialect.name == "sqlite":
        return None
    return async_sessionmaker(
        engine.execution_options(isolation_level="AUTOCOMMIT"),
        expire_on_commit=False,
        autoflush=False,
    )


def after_commit(session: AsyncSession, hook: AfterCommitHook) -> None:
    """Run `hook` only if and after the session's unit of work commits.

    Used to enqueue jobs and send mail: on rollback the hook is dropped.
    """
    session.info.setdefault("after_commit", []).append(hook)


@asynccontextmanager
async def session_scope(factory: SessionFactory) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit on success, roll back on error, then run after-commit hooks.

    Args:
        factory: The session factory from the application state.

    Yields:
        An open session.
    """
    async with factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            session.info.pop("after_commit", None)
            raise
        hooks: list[AfterCommitHook] = session.info.pop("after_commit", [])
    for hook in hooks:
        result = hook()
        if hasattr(result, "__await__"):
            await result


#: asyncpg errors that mean the connection (not the statement) failed: the pooled connection
#: is discarded and the error re-raised as SQLAlchemy's, which the API answers with 503.
_ASYNCPG_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    OSError,
    TimeoutError,
)


@asynccontextmanager
async def asyncpg_connection(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection's own asyncpg connection, outside any transaction (autocommit).

    For one-statement reads on the hottest request paths only: checking a connection out of
    the pool below SQLAlchemy's `Connection` layer and querying the driver directly costs half
    as much CPU as a Core `SELECT`. The caller writes the SQL in asyncpg's dialect. The
    connection goes back to the same pool (reset is a no-op: no transaction was begun); if
    anything fails mid-statement it is discarded instead, since its state is unknown.

    Raises:
        sqlalchemy.exc.OperationalError: The connection failed (translated from the driver).
    """
    fairy = await engine.raw_connection()
    try:
        yield fairy.driver_connection
    except _ASYNCPG_CONNECTION_ERRORS as exc:
        await greenlet_spawn(fairy.invalidate, exc if isinstance(exc, Exception) else None)
        raise sa_exc.OperationalError("(driver-level read)", None, exc) from exc
    except BaseException:
        await asyncio.shield(greenlet_spawn(fairy.invalidate))
        raise
    # Check-in may close the connection (an overflow one, or one past `pool_recycle`), which
    # is I/O: SQLAlchemy's async adaptation needs it to run inside its greenlet.
    await greenlet_spawn(fairy.close)


@dataclass(frozen=True)
class DriverStatement:
    """A Core statement compiled once into asyncpg's own SQL, for `asyncpg_connection`.

    Writing the driver-level SQL by hand would duplicate the schema; compiling the Core
    statement keeps one source. The column types' bind processors are kept too (JSON encoding,
    UTC checks), so values go to the driver exactly as SQLAlchemy would send them.

    Attributes:
        sql: The statement with `$n` parameters.
        names: The bind parameter names, in `$n` order.
        processors: Each parameter's bind processor (None where the type has none).
        constants: Values the statement carries itself (literals such as a status it sets),
            by parameter name; every other parameter must be given to `arguments`.
    """

    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    constants: Mapping[str, Any]

    @classmethod
    def compile(cls, statement: Any) -> DriverStatement:
        """Compile `statement`: its open parameters are named `bindparam`s."""
        dialect = asyncpg_dialect()  # type: ignore[no-untyped-call]
        compiled = statement.compile(dialect=dialect)
        names = tuple(compiled.positiontup or ())
        binds = [compiled.binds[name] for name in names]
        processors = tuple(b.type.dialect_impl(dialect).bind_processor(dialect) for b in binds)
        # A column default (`default=`/`onupdate=`) is filled in by SQLAlchemy's execution
        # context, which the driver path skips: the statement must give such columns values.
        # Literals the statement carries are anonymous parameters (`%(… param)s` keys).
        defaulted = [
            name
            for name, b in zip(names, binds, strict=True)
            if not b.required and (b.callable is not None or not str(b.key).startswith("%("))
        ]
        if defaulted or compiled.insert_prefetch or compiled.update_prefetch:
            raise ValueError(f"give these defaulted columns values: {defaulted}")
        constants = {name: b.value for name, b in zip(names, binds, strict=True) if not b.required}
        return cls(str(compiled), names, processors, constants)

    def arguments(self, values: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for `values` (by parameter name), processed.

        Raises:
            KeyError: An open parameter has no value.
        """
        constants = self.constants
        return [
            value if processor is None else processor(value)
            for value, processor in zip(
                (values[n] if n in values else constants[n] for n in self.names),
                self.processors,
                strict=True,
            )
        ]
