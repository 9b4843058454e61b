"""Every SQL statement of the authentication domain.

Reads select only the columns a flow needs (no ORM object loading on hot paths); single-use
tokens are claimed with one conditional `UPDATE … RETURNING`, so concurrent claims have exactly
one winner on both SQLite (≥ 3.35) and PostgreSQL without read-then-write races.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Table, bindparam, case, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlmodel import SQLModel

from dashtam.core.database import DriverStatement, asyncpg_connection
from dashtam.core.types import UTCDateTime
from dashtam.models.auth import (
    AuthSession,
    EmailVerificationToken,
    PasswordResetToken,
    RefreshToken,
    SecurityEvent,
)
from dashtam.models.user import User

#: A result row of any width (rows are variadic generics in SQLAlchemy 2.1).
AnyRow = Row[*tuple[Any, ...]]
#: Skip ORM identity-map synchronisation: these flows never hold the rows they update.
_NO_SYNC: dict[str, Any] = {"synchronize_session": False}
#: Upper bound on the sessions listed for one user.
MAX_LISTED_SESSIONS = 500


def _table(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


# Core tables: typed column expressions and no ORM overhead for statements on hot paths.
users = _table(User)
auth_sessions = _table(AuthSession)
refresh_tokens = _table(RefreshToken)
verification_tokens = _table(EmailVerificationToken)
reset_tokens = _table(PasswordResetToken)
_U = users.c
_S = auth_sessions.c
_R = refresh_tokens.c

# --- users ------------------------------------------------------------------------------------


async def find_credentials_by_email(session: AsyncSession, *, email: str) -> AnyRow | None:
    """The columns login needs, by normalised email (one unique-index probe)."""
    stmt = select(
        _U.id,
        _U.email,
        _U.name,
        _U.password_hash,
        _U.email_verified_at,
        _U.is_active,
        _U.locked_until,
        _U.created_at,
    ).where(_U.email == email)
    return (await session.execute(stmt)).one_or_none()


async def find_credentials_by_id(session: AsyncSession, *, user_id: uuid.UUID) -> AnyRow | None:
    """The columns a password change needs, by id."""
    stmt = select(_U.id, _U.email, _U.name, _U.password_hash, _U.is_active).where(_U.id == user_id)
    return (await session.execute(stmt)).one_or_none()


async def find_contact_by_email(session: AsyncSession, *, email: str) -> AnyRow | None:
    """Id, name, verification and active state by normalised email (resend, reset requests)."""
    stmt = select(_U.id, _U.email, _U.name, _U.email_verified_at, _U.is_active).where(
        _U.email == email
    )
    return (await session.execute(stmt)).one_or_none()


_PROFILE_COLUMNS = (
    _U.id,
    _U.email,
    _U.name,
    _U.email_verified_at,
    _U.is_active,
    _U.created_at,
    _U.last_login_at,
)


#: Built once (constructing a statement costs as much as its cached compilation lookup): the
#: profile and, in the same row, the named login session's state (NULLs when no session
#: has that id): what every authenticated request that needs the caller's profile reads.
_PRINCIPAL_COLUMNS = (
    *_PROFILE_COLUMNS,
    _S.user_id.label("session_user_id"),
    _S.revoked_at.label("session_revoked_at"),
    _S.expires_at.label("session_expires_at"),
)
_PRINCIPAL = (
    select(*_PRINCIPAL_COLUMNS)
    .select_from(users.outerjoin(auth_sessions, _S.id == bindparam("session_id")))
    .where(_U.id == bindparam("user_id"))
)
#: `_PRINCIPAL` compiled once for the driver (`read_principal` on PostgreSQL).
_PRINCIPAL_DRIVER = DriverStatement.compile(_PRINCIPAL)


async def read_principal(
    engine: AsyncEngine, *, user_id: uuid.UUID, session_id: uuid.UUID
) -> Mapping[str, Any] | None:
    """The user's profile columns and their session's state, by name; None without the user.

    The authenticated hot path: one SELECT per request, outside any unit of work. On
    PostgreSQL it goes straight to asyncpg on a pooled connection (`asyncpg_connection`):
    SQLAlchemy's execution layer (connection wrapper, cache-key lookup, execution context,
    result processing) costs more CPU than the round trip itself. The columns need no
    conversion there (`timestamptz` arrives as aware UTC, `uuid` as `UUID`). SQLite takes the
    Core statement.
    """
    if engine.dialect.driver == "asyncpg":
        async with asyncpg_connection(engine) as driver:
            ids = {"user_id": user_id, "session_id": session_id}
            record = await driver.fetchrow(_PRINCIPAL_DRIVER.sql, *_PRINCIPAL_DRIVER.arguments(ids))
        return dict(record.items()) if record is not None else None
    async with engine.begin() as connection:
        result = await connection.execute(
            _PRINCIPAL, {"user_id": user_id, "session_id": session_id}
        )
        row = result.one_or_none()
    return row._asdict() if row is not None else None


async def insert_user_if_absent(
    session: AsyncSession,
    *,
    email: str,
    name: str,
    password_hash: str,
    now: datetime,
) -> uuid.UUID | None:
    """Create a user unless the email is taken; returns the new id, or None when taken.

    `ON CONFLICT DO NOTHING` makes two racing registrations of one address end with one row
    and no error (a plain INSERT would fail the second with a unique violation, a 500).
    """
    values = {
        "id": uuid.uuid4(),
        "email": email,
        "name": name,
        "password_hash": password_hash,
        "email_verified_at": None,
        "is_active": True,
        "failed_login_count": 0,
        "locked_until": None,
        "last_login_at": None,
        "last_login_ip": None,
        "created_at": now,
        "updated_at": now,
    }
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = (
        insert(users)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["email"])
        .returning(_U.id)
    )
    result = await session.execute(stmt)
    new_id: uuid.UUID | None = result.scalar_one_or_none()
    return new_id


async def update_name(session: AsyncSession, *, user_id: uuid.UUID, name: str) -> AnyRow | None:
    """Rename a user and return the profile columns."""
    stmt = (
        update(users)
        .where(_U.id == user_id)
        .values(name=name)
        .returning(*_PROFILE_COLUMNS)
        .execution_options(**_NO_SYNC)
    )
    return (await session.execute(stmt)).one_or_none()


async def mark_email_verified(session: AsyncSession, *, user_id: uuid.UUID, now: datetime) -> None:
    """Set `email_verified_at` unless it is already set."""
    stmt = (
        update(users)
        .where(_U.id == user_id, _U.email_verified_at.is_(None))
        .values(email_verified_at=now)
        .execution_options(**_NO_SYNC)
    )
    await session.execute(stmt)


async def record_login(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    now: datetime,
    ip_address: str | None,
) -> None:
    """Stamp a successful login and clear the database-side lockout state."""
    stmt = (
        update(users)
        .where(_U.id == user_id)
        .values(
            last_login_at=now, last_login_ip=ip_address, failed_login_count=0, locked_until=None
        )
        .execution_options(**_NO_SYNC)
    )
    await session.execute(stmt)


async def replace_password_hash(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    new_hash: str,
    expected_hash: str | None = None,
    clear_lockout: bool = False,
) -> bool:
    """Store a new password hash; with `expected_hash`, only if the stored one is unchanged.

    The guard turns "read hash, verify, write" into a compare-and-set: a concurrent change or
    upgrade wins cleanly instead of being silently overwritten.

    Returns:
        True when the row was updated.
    """
    conditions: list[Any] = [_U.id == user_id]
    if expected_hash is not None:
        conditions.append(_U.password_hash == expected_hash)
    values: dict[str, Any] = {"password_hash": new_hash}
    if clear_lockout:
        values.update(failed_login_count=0, locked_until=None)
    stmt = (
        update(users)
        .where(*conditions)
        .values(**values)
        .returning(_U.id)
        .execution_options(**_NO_SYNC)
    )
    return (await session.execute(stmt)).first() is not None


async def count_failed_login(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    threshold: int,
    lock_until: datetime,
) -> AnyRow | None:
    """Database fallback of the lockout counter: add one failure, lock at the threshold.

    Reaching the threshold sets `locked_until` and restarts the count, in one atomic UPDATE.

    Returns:
        `(failed_login_count, locked_until)` after the update.
    """
    reached = _U.failed_login_count + 1 >= threshold
    # Every SET expression sees the row as it was before the UPDATE, on both backends.
    stmt = (
        update(users)
        .where(_U.id == user_id)
        .values(
            failed_login_count=case((reached, 0), else_=_U.failed_login_count + 1),
            locked_until=case(
                (reached, literal(lock_until, type_=UTCDateTime())), else_=_U.locked_until
            ),
        )
        .returning(_U.failed_login_count, _U.locked_until)
        .execution_options(**_NO_SYNC)
    )
    return (await session.execute(stmt)).one_or_none()


# --- sessions ---------------------------------------------------------------------------------


async def add_session(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    now: datetime,
    expires_at: datetime,
    ip_address: str | None,
    user_agent: str | None,
) -> uuid.UUID:
    """Insert a login session and return its id."""
    row = AuthSession(
        user_id=user_id,
        created_at=now,
        last_used_at=now,
        expires_at=expires_at,
        ip_address=ip_address,
        user_agent=user_agent,
    )
    session.add(row)
    # Flushed at once: the refresh token inserted next references it (no relationship() to
    # let the unit of work order the two INSERTs for us).
    await session.flush()
    return row.id


async def add_refresh_token(
    session: AsyncSession,
    *,
    session_id: uuid.UUID,
    token_hash: str,
    now: datetime,
    expires_at: datetime,
) -> None:
    """Insert a refresh token (by its keyed hash)."""
    session.add(
        RefreshToken(
            session_id=session_id, token_hash=token_hash, issued_at=now, expires_at=expires_at
        )
    )


async def claim_refresh_token(
    session: AsyncSession, *, token_hash: str, now: datetime
) -> uuid.UUID | None:
    """Spend a live refresh token atomically; returns its session id, or None if not live."""
    stmt = (
        update(refresh_tokens)
        .where(
            _R.token_hash == token_hash,
            _R.used_at.is_(None),
            _R.expires_at > now,
        )
        .values(used_at=now)
        .returning(_R.session_id)
        .execution_options(**_NO_SYNC)
    )
    session_id: uuid.UUID | None = (await session.execute(stmt)).scalar_one_or_none()
    return session_id


async def find_refresh_token(session: AsyncSession, *, token_hash: str) -> AnyRow | None:
    """`(session_id, used_at, expires_at)` of a refresh token, live or not."""
    stmt = select(_R.session_id, _R.used_at, _R.expires_at).where(_R.token_hash == token_hash)
    return (await session.execute(stmt)).one_or_none()


async def get_session_for_refresh(session: AsyncSession, *, session_id: uuid.UUID) -> AnyRow | None:
    """`(user_id, expires_at, revoked_at, is_active)` of a session and its user."""
    stmt = (
        select(_S.user_id, _S.expires_at, _S.revoked_at, _U.is_active)
        .join(users, _U.id == _S.user_id)
        .where(_S.id == session_id)
    )
    return (await session.execute(stmt)).one_or_none()


async def touch_session(session: AsyncSession, *, session_id: uuid.UUID, now: datetime) -> None:
    """Record that a session was just used (on refresh, not on every request)."""
    stmt = (
        update(auth_sessions)
        .where(_S.id == session_id)
        .values(last_used_at=now)
        .execution_options(**_NO_SYNC)
    )
    await session.execute(stmt)


async def get_session_state(session: AsyncSession, *, session_id: uuid.UUID) -> AnyRow | None:
    """`(user_id, expires_at, revoked_at)` of one session."""
    stmt = select(_S.user_id, _S.expires_at, _S.revoked_at).where(_S.id == session_id)
    return (await session.execute(stmt)).one_or_none()


async def list_active_sessions(
    session: AsyncSession, *, user_id: uuid.UUID, now: datetime, limit: int
) -> Sequence[AnyRow]:
    """A user's live sessions, newest first (at most `limit`)."""
    stmt = (
        select(
            _S.id,
            _S.user_agent,
            _S.ip_address,
            _S.created_at,
            _S.last_used_at,
            _S.expires_at,
        )
        .where(
            _S.user_id == user_id,
            _S.revoked_at.is_(None),
            _S.expires_at > now,
        )
        .order_by(_S.created_at.desc(), _S.id.desc())
        .limit(limit)
    )
    return (await session.execute(stmt)).all()


async def revoke_sessions(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    now: datetime,
    reason: str,
    session_ids: Sequence[uuid.UUID] | None = None,
    keep: uuid.UUID | None = None,
) -> list[uuid.UUID]:
    """Revoke a user's live sessions (all, or those in `session_ids`), except `keep`.

    Scoped by `user_id` in SQL, so nobody can revoke someone else's session by id.

    Returns:
        The ids actually revoked (already revoked or foreign ones are not included).
    """
    conditions: list[Any] = [
        _S.user_id == user_id,
        _S.revoked_at.is_(None),
    ]
    if session_ids is not None:
        if not session_ids:
            return []
        conditions.append(_S.id.in_(session_ids))
    if keep is not None:
        conditions.append(_S.id != keep)
    stmt = (
        update(auth_sessions)
        .where(*conditions)
        .values(revoked_at=now, revoke_reason=reason)
        .returning(_S.id)
        .execution_options(**_NO_SYNC)
    )
    return list((await session.execute(stmt)).scalars().all())


# --- email verification and password reset tokens ---------------------------------------------

_SingleUseToken = type[EmailVerificationToken] | type[PasswordResetToken]


async def add_single_use_token(
    session: AsyncSession,
    model: _SingleUseToken,
    *,
    user_id: uuid.UUID,
    token_hash: str,
    now: datetime,
    expires_at: datetime,
) -> None:
    """Insert a verification or reset token (by its keyed hash)."""
    session.add(
        model(user_id=user_id, token_hash=token_hash, created_at=now, expires_at=expires_at)
    )


async def spend_unused_tokens(
    session: AsyncSession, model: _SingleUseToken, *, user_id: uuid.UUID, now: datetime
) -> None:
    """Mark every unused token of this kind for the user as used (superseded or void)."""
    table = _table(model)
    stmt = (
        update(table)
        .where(table.c.user_id == user_id, table.c.used_at.is_(None))
        .values(used_at=now)
        .execution_options(**_NO_SYNC)
    )
    await session.execute(stmt)


async def supersede_single_use_token(
    session: AsyncSession,
    model: _SingleUseToken,
    *,
    user_id: uuid.UUID,
    token_hash: str,
    now: datetime,
    expires_at: datetime,
) -> None:
    """Spend the user's unused tokens of this kind, then add the new one: the newest wins."""
    await spend_unused_tokens(session, model, user_id=user_id, now=now)
    await add_single_use_token(
        session, model, user_id=user_id, token_hash=token_hash, now=now, expires_at=expires_at
    )


async def claim_single_use_token(
    session: AsyncSession, model: _SingleUseToken, *, token_hash: str, now: datetime
) -> uuid.UUID | None:
    """Spend a live verification or reset token atomically; returns its user id."""
    table = _table(model)
    stmt = (
        update(table)
        .where(
            table.c.token_hash == token_hash,
            table.c.used_at.is_(None),
            table.c.expires_at > now,
        )
        .values(used_at=now)
        .returning(table.c.user_id)
        .execution_options(**_NO_SYNC)
    )
    user_id: uuid.UUID | None = (await session.execute(stmt)).scalar_one_or_none()
    return user_id


async def find_live_reset_token(
    session: AsyncSession, *, token_hash: str, now: datetime
) -> AnyRow | None:
    """`(user_id, expires_at, email, name)` of a live reset token and its active user."""
    stmt = (
        select(reset_tokens.c.user_id, reset_tokens.c.expires_at, _U.email, _U.name)
        .join(users, _U.id == reset_tokens.c.user_id)
        .where(
            reset_tokens.c.token_hash == token_hash,
            reset_tokens.c.used_at.is_(None),
            reset_tokens.c.expires_at > now,
            _U.is_active.is_(True),
        )
    )
    return (await session.execute(stmt)).one_or_none()


# --- security events --------------------------------------------------------------------------


def add_security_event(
    session: AsyncSession,
    *,
    event_type: str,
    user_id: uuid.UUID | None,
    now: datetime,
    ip_address: str | None,
    user_agent: str | None,
    request_id: str | None,
    details: dict[str, Any],
) -> None:
    """Append one security event (written with the rest of the unit of work)."""
    session.add(
        SecurityEvent(
            event_type=event_type,
            user_id=user_id,
            created_at=now,
            ip_address=ip_address,
            user_agent=user_agent,
            request_id=request_id,
            details=details,
        )
    )
