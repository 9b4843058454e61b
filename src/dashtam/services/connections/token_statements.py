"""The two statements of the token hot path, run on the driver directly on PostgreSQL.

Every provider call reads the connection (provider, status and sealed tokens in one SELECT),
and every refresh swaps the tokens with their audit rows in one statement. Through an ORM
session each of these cost more CPU than its round trip (session, connection wrapper, cache
key, execution context, statement construction). On PostgreSQL both go straight to asyncpg
on a pooled connection (`core.database.asyncpg_connection`), as statements built once from
the same Core definitions and compiled once per shape (`DriverStatement`). Elsewhere (SQLite)
the read runs through SQLAlchemy Core and the swap is `repository.swap_tokens_with_audit`,
the same writes one after the other in a unit of work.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, exists, insert, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from dashtam.core.database import DriverStatement, asyncpg_connection
from dashtam.models.provider import Provider, ProviderAuditLog, ProviderStatus, ProviderToken


class ConnectionRow(NamedTuple):
    """A provider and its token row (token columns None when it has none)."""

    user_id: uuid.UUID
    provider_key: str
    status: str
    connected_at: datetime | None
    token_id: uuid.UUID | None
    access_token_encrypted: str | None
    refresh_token_encrypted: str | None
    key_id: str | None
    access_expires_at: datetime | None
    refresh_expires_at: datetime | None
    scope: str | None
    refresh_count: int | None
    refreshed_at: datetime | None


_CONNECTION: Any = (
    select(
        col(Provider.user_id),
        col(Provider.provider_key),
        col(Provider.status),
        col(Provider.connected_at),
        col(ProviderToken.id).label("token_id"),
        col(ProviderToken.access_token_encrypted),
        col(ProviderToken.refresh_token_encrypted),
        col(ProviderToken.key_id),
        col(ProviderToken.access_expires_at),
        col(ProviderToken.refresh_expires_at),
        col(ProviderToken.scope),
        col(ProviderToken.refresh_count),
        col(ProviderToken.refreshed_at),
    )
    .select_from(Provider)
    .outerjoin(ProviderToken, col(ProviderToken.provider_id) == col(Provider.id))
    .where(col(Provider.id) == bindparam("provider_id"))
)
#: The same, only if the provider belongs to `user_id` (user-scoped callers).
_OWNED_CONNECTION = _CONNECTION.where(col(Provider.user_id) == bindparam("user_id"))
_CONNECTION_DRIVER = DriverStatement.compile(_CONNECTION)
_OWNED_CONNECTION_DRIVER = DriverStatement.compile(_OWNED_CONNECTION)
if tuple(c.name for c in _CONNECTION.selected_columns) != ConnectionRow._fields:  # pragma: no cover
    raise RuntimeError("ConnectionRow must list the connection SELECT's columns in order")


async def read_connection(
    engine: AsyncEngine, *, provider_id: uuid.UUID, user_id: uuid.UUID | None = None
) -> ConnectionRow | None:
    """A provider and its token row in one SELECT, outside any unit of work.

    Args:
        provider_id: The provider.
        user_id: Also require this owner: another user's provider reads as missing.

    Returns:
        The row, or None when there is no such provider.
    """
    values = {"provider_id": provider_id, "user_id": user_id}
    if engine.dialect.driver == "asyncpg":
        statement = _CONNECTION_DRIVER if user_id is None else _OWNED_CONNECTION_DRIVER
        async with asyncpg_connection(engine) as driver:
            record = await driver.fetchrow(statement.sql, *statement.arguments(values))
        return None if record is None else ConnectionRow(*record.values())
    async with engine.connect() as connection:
        query = _CONNECTION if user_id is None else _OWNED_CONNECTION
        row = (await connection.execute(query, values)).one_or_none()
    return None if row is None else ConnectionRow(*row)


# --- the token swap with its audit rows -------------------------------------------------------

#: Compiled swap statements by shape: (token columns, audit columns, audit rows, activate).
_SWAPS: dict[tuple[tuple[str, ...], tuple[str, ...], int, bool], DriverStatement] = {}


def _swap_statement(
    value_names: tuple[str, ...], audit_names: tuple[str, ...], audit_count: int, activate: bool
) -> Any:
    """The swap, its audit rows and the status change as one statement (data-modifying CTEs).

    The audit rows are inserted only when the swap returned a row (`did_swap`), so a writer
    that lost the compare-and-swap writes nothing. Parameters: `row_id`, `expected`, `v_<col>`
    for the token columns, `a<i>_<col>` for audit row i, and `provider_id` / `now` to activate.
    """
    tokens = ProviderToken.__table__  # type: ignore[attr-defined]
    swap = (
        update(ProviderToken)
        .where(
            col(ProviderToken.id) == bindparam("row_id"),
            col(ProviderToken.access_token_encrypted) == bindparam("expected"),
        )
        .values({name: bindparam(f"v_{name}", type_=tokens.c[name].type) for name in value_names})
        .returning(col(ProviderToken.id))
        .cte("swapped")
    )
    did_swap = exists(select(swap.c.id))
    audit = ProviderAuditLog.__table__  # type: ignore[attr-defined]
    rows = [
        select(
            *(bindparam(f"a{i}_{name}", type_=audit.c[name].type) for name in audit_names)
        ).where(did_swap)
        for i in range(audit_count)
    ]
    statement = (
        insert(ProviderAuditLog)
        .from_select(list(audit_names), rows[0] if audit_count == 1 else union_all(*rows))
        .returning(col(ProviderAuditLog.id))
    )
    if activate:
        activated = (
            update(Provider)
            .where(col(Provider.id) == bindparam("provider_id"), did_swap)
            .values(
                status=ProviderStatus.ACTIVE.value,
                last_error=None,
                updated_at=bindparam("now", type_=Provider.__table__.c.updated_at.type),  # type: ignore[attr-defined]
            )
            .cte("activated")
        )
        statement = statement.add_cte(activated)
    return statement


async def swap_tokens_with_audit_direct(
    engine: AsyncEngine,
    *,
    row_id: uuid.UUID,
    expected_access_ciphertext: str,
    values: Mapping[str, Any],
    audit_rows: Sequence[Mapping[str, Any]],
    activate: tuple[uuid.UUID, datetime] | None = None,
) -> bool:
    """PostgreSQL: swap the tokens and write their audit rows in one autocommitted statement.

    Args:
        values: Token columns to write.
        audit_rows: Column values of the audit rows (`audit.audit_values`), at least one,
            all with the same columns.
        activate: `(provider id, now)` to also set the provider `active` with no error.

    Returns:
        True when the row was swapped (and everything else written); False when another
        writer got there first (nothing written).
    """
    value_names = tuple(values)
    audit_names = tuple(audit_rows[0])
    shape = (value_names, audit_names, len(audit_rows), activate is not None)
    statement = _SWAPS.get(shape)
    if statement is None:
        statement = _SWAPS[shape] = DriverStatement.compile(_swap_statement(*shape))
    parameters: dict[str, Any] = {"row_id": row_id, "expected": expected_access_ciphertext}
    parameters.update({f"v_{name}": value for name, value in values.items()})
    for i, row in enumerate(audit_rows):
        parameters.update({f"a{i}_{name}": row[name] for name in audit_names})
    if activate is not None:
        parameters["provider_id"], parameters["now"] = activate
    async with asyncpg_connection(engine) as driver:
        inserted = await driver.fetch(statement.sql, *statement.arguments(parameters))
    return len(inserted) > 0
