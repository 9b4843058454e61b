"""Every SQL statement of the connections domain.

Single-use OAuth states are claimed with one conditional `UPDATE … RETURNING` (exactly one
winner on SQLite ≥ 3.35 and PostgreSQL). Token rows are rewritten with a compare-and-swap on
the current access-token ciphertext (unique per write thanks to the random nonce), so a writer
that read stale tokens can never overwrite newer ones.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Row,
    delete,
    func,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from dashtam.models.provider import (
    OAuthState,
    Provider,
    ProviderAuditLog,
    ProviderStatus,
    ProviderToken,
)

#: Skip ORM identity-map synchronisation: these statements never touch loaded objects.
_NO_SYNC: dict[str, Any] = {"synchronize_session": False}
#: Upper bound on the providers listed for one user (a person has a handful).
MAX_LISTED_PROVIDERS = 500

# --- providers --------------------------------------------------------------------------------


async def get_provider_for_user(
    session: AsyncSession, *, user_id: uuid.UUID, provider_id: uuid.UUID
) -> Provider | None:
    """The provider if it exists and belongs to the user (one primary-key probe)."""
    stmt = select(Provider).where(col(Provider.id) == provider_id, col(Provider.user_id) == user_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_provider(session: AsyncSession, *, provider_id: uuid.UUID) -> Provider | None:
    """The provider by id, whoever owns it (callers that are not user-scoped: jobs, tokens)."""
    return await session.get(Provider, provider_id)


async def provider_brief(
    session: AsyncSession, *, provider_id: uuid.UUID
) -> Row[uuid.UUID, str, str] | None:
    """`(user_id, provider_key, status)` of a provider, whoever owns it, or None."""
    stmt = select(col(Provider.user_id), col(Provider.provider_key), col(Provider.status)).where(
        col(Provider.id) == provider_id
    )
    return (await session.execute(stmt)).one_or_none()


async def list_providers(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    status: str | None = None,
    provider_key: str | None = None,
) -> Sequence[Provider]:
    """The user's providers, oldest first, optionally filtered."""
    stmt = select(Provider).where(col(Provider.user_id) == user_id)
    if status is not None:
        stmt = stmt.where(col(Provider.status) == status)
    if provider_key is not None:
        stmt = stmt.where(col(Provider.provider_key) == provider_key)
    stmt = stmt.order_by(col(Provider.created_at), col(Provider.id)).limit(MAX_LISTED_PROVIDERS)
    return (await session.execute(stmt)).scalars().all()


async def alias_in_use(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    alias: str,
    exclude_id: uuid.UUID | None = None,
) -> bool:
    """Whether the user already has a provider with this alias (other than `exclude_id`)."""
    stmt = select(func.count()).where(
        col(Provider.user_id) == user_id, col(Provider.alias) == alias
    )
    if exclude_id is not None:
        stmt = stmt.where(col(Provider.id) != exclude_id)
    return bool((await session.execute(stmt)).scalar_one())


async def set_provider_status(
    session: AsyncSession,
    *,
    provider_id: uuid.UUID,
    status: str,
    last_error: str | None,
    now: datetime,
    connected_at: datetime | None = None,
) -> None:
    """Set a provider's status and error in one statement."""
    values: dict[str, Any] = {"status": status, "last_error": last_error, "updated_at": now}
    if connected_at is not None:
        values["connected_at"] = connected_at
    stmt = update(Provider).where(col(Provider.id) == provider_id).values(**values)
    await session.execute(stmt.execution_options(**_NO_SYNC))


async def delete_provider(session: AsyncSession, *, provider_id: uuid.UUID) -> None:
    """Delete a provider with its tokens and pending states (audit rows stay)."""
    # Explicit deletes rather than trusting ON DELETE CASCADE alone: the tokens must be gone
    # even on a SQLite connection opened without `foreign_keys=ON`.
    await delete_tokens(session, provider_id=provider_id)
    await delete_states(session, provider_id=provider_id)
    stmt = delete(Provider).where(col(Provider.id) == provider_id)
    await session.execute(stmt.execution_options(**_NO_SYNC))


async def activate_provider(
    session: AsyncSession, *, provider_id: uuid.UUID, now: datetime
) -> bool:
    """Mark a provider `active` and connected now; False when the provider no longer exists."""
    stmt = (
        update(Provider)
        .where(col(Provider.id) == provider_id)
        .values(
            status=ProviderStatus.ACTIVE.value, last_error=None, updated_at=now, connected_at=now
        )
        .returning(col(Provider.id))
    )
    result = await session.execute(stmt.execution_options(**_NO_SYNC))
    return result.scalar_one_or_none() is not None


# --- tokens -----------------------------------------------------------------------------------


async def get_tokens(
    session: AsyncSession, *, provider_id: uuid.UUID, for_update: bool = False
) -> ProviderToken | None:
    """The provider's token row, if any.

    Args:
        for_update: Lock the row until the unit of work ends (PostgreSQL `FOR UPDATE`; SQLite
            transactions already hold the database's write lock from `BEGIN IMMEDIATE`).
    """
    stmt = select(ProviderToken).where(col(ProviderToken.provider_id) == provider_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def token_row_id(
    session: AsyncSession, *, provider_id: uuid.UUID, for_update: bool = False
) -> uuid.UUID | None:
    """The id of the provider's token row (the vault binds ciphertexts to it).

    Args:
        for_update: Lock the row until the unit of work ends (see `get_tokens`).
    """
    stmt = select(col(ProviderToken.id)).where(col(ProviderToken.provider_id) == provider_id)
    if for_update:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def insert_tokens(session: AsyncSession, *, values: dict[str, Any]) -> None:
    """Insert a provider's first token row (`values` holds every column, the id included)."""
    stmt = insert(ProviderToken).values(**values)
    await session.execute(stmt)


async def update_tokens(
    session: AsyncSession, *, row_id: uuid.UUID, values: dict[str, Any]
) -> None:
    """Rewrite a token row the caller holds locked (`token_row_id(..., for_update=True)`)."""
    stmt = update(ProviderToken).where(col(ProviderToken.id) == row_id).values(**values)
    await session.execute(stmt.execution_options(**_NO_SYNC))


async def update_tokens_if_unchanged(
    session: AsyncSession,
    *,
    row_id: uuid.UUID,
    expected_access_ciphertext: str,
    values: dict[str, Any],
) -> bool:
    """Rewrite a token row only if nobody rewrote it since we read it.

    Returns:
        True when the row was updated; False when another writer got there first.
    """
    stmt = (
        update(ProviderToken)
        .where(
            col(ProviderToken.id) == row_id,
            col(ProviderToken.access_token_encrypted) == expected_access_ciphertext,
        )
        .values(**values)
        .returning(col(ProviderToken.id))
    )
    result = await session.execute(stmt.execution_options(**_NO_SYNC))
    return result.scalar_one_or_none() is not None


async def swap_tokens_with_audit(
    session: AsyncSession,
    *,
    row_id: uuid.UUID,
    expected_access_ciphertext: str,
    values: dict[str, Any],
    audit_rows: Sequence[dict[str, Any]],
    activate: tuple[uuid.UUID, datetime] | None = None,
) -> bool:
    """`update_tokens_if_unchanged`, plus its audit rows (and status) only if it swapped.

    The writes one after the other: the caller's unit of work makes them atomic. (PostgreSQL
    runs them as one statement on the driver: `token_statements.swap_tokens_with_audit_direct`.)

    Args:
        audit_rows: Column values of the audit rows (`audit.audit_values`), at least one.
        activate: `(provider id, now)` to also set the provider `active` with no error.

    Returns:
        True when the row was swapped (and everything else written); False when another
        writer got there first (nothing written).
    """
    swapped = await update_tokens_if_unchanged(
        session,
        row_id=row_id,
        expected_access_ciphertext=expected_access_ciphertext,
        values=values,
    )
    if swapped:
        if activate is not None:
            await set_provider_status(
                session,
                provider_id=activate[0],
                status=ProviderStatus.ACTIVE.value,
                last_error=None,
                now=activate[1],
            )
        await session.execute(insert(ProviderAuditLog), list(audit_rows))
    return swapped


async def delete_tokens(session: AsyncSession, *, provider_id: uuid.UUID) -> int:
    """Destroy the provider's tokens; returns how many rows were deleted."""
    stmt = (
        delete(ProviderToken)
        .where(col(ProviderToken.provider_id) == provider_id)
        .returning(col(ProviderToken.id))
    )
    result = await session.execute(stmt.execution_options(**_NO_SYNC))
    return len(result.all())


async def token_rows_needing_rotation(
    session: AsyncSession, *, active_key_id: str, after: uuid.UUID | None, limit: int
) -> Sequence[ProviderToken]:
    """The next batch of token rows not on the active key, by id (keyset, resumable)."""
    stmt = select(ProviderToken).where(col(ProviderToken.key_id) != active_key_id)
    if after is not None:
        stmt = stmt.where(col(ProviderToken.id) > after)
    stmt = stmt.order_by(col(ProviderToken.id)).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def count_token_rows_needing_rotation(session: AsyncSession, *, active_key_id: str) -> int:
    """How many token rows are still on an older key."""
    stmt = select(func.count()).where(col(ProviderToken.key_id) != active_key_id)
    return int((await session.execute(stmt)).scalar_one())


# --- OAuth states -----------------------------------------------------------------------------


async def consume_state(
    session: AsyncSession,
    *,
    state_hash: str,
    provider_id: uuid.UUID,
    now: datetime,
) -> Row[uuid.UUID, uuid.UUID, uuid.UUID, str | None] | None:
    """Claim a state: unused, unexpired, for this provider. At most one caller ever wins.

    Returns:
        `(id, user_id, provider_id, code_verifier_encrypted)`, or None when the state is
        unknown, used, expired or another provider's.
    """
    stmt = (
        update(OAuthState)
        .where(
            col(OAuthState.state_hash) == state_hash,
            col(OAuthState.provider_id) == provider_id,
            col(OAuthState.used_at).is_(None),
            col(OAuthState.expires_at) > now,
        )
        .values(used_at=now)
        .returning(
            col(OAuthState.id),
            col(OAuthState.user_id),
            col(OAuthState.provider_id),
            col(OAuthState.code_verifier_encrypted),
        )
    )
    return (await session.execute(stmt.execution_options(**_NO_SYNC))).one_or_none()


async def delete_states(session: AsyncSession, *, provider_id: uuid.UUID) -> None:
    """Forget every state of a provider (disconnect, delete)."""
    stmt = delete(OAuthState).where(col(OAuthState.provider_id) == provider_id)
    await session.execute(stmt.execution_options(**_NO_SYNC))


async def purge_stale_states(session: AsyncSession, *, before: datetime) -> None:
    """Delete states that expired before `before`: they can never match again.

    Used states go too: a state can only be used before it expires, so one used long ago
    expired long ago as well. Filtering on `expires_at` alone keeps this an index range scan.
    """
    stmt = delete(OAuthState).where(col(OAuthState.expires_at) < before)
    await session.execute(stmt.execution_options(**_NO_SYNC))


async def live_states_with_verifier(
    session: AsyncSession, *, now: datetime, after: uuid.UUID | None, limit: int
) -> Sequence[OAuthState]:
    """Unused, unexpired states holding an encrypted PKCE verifier (for key rotation)."""
    stmt = select(OAuthState).where(
        col(OAuthState.code_verifier_encrypted).is_not(None),
        col(OAuthState.used_at).is_(None),
        col(OAuthState.expires_at) > now,
    )
    if after is not None:
        stmt = stmt.where(col(OAuthState.id) > after)
    stmt = stmt.order_by(col(OAuthState.id)).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def update_state_verifier_if_unchanged(
    session: AsyncSession, *, state_id: uuid.UUID, expected: str, ciphertext: str
) -> bool:
    """Swap a state's verifier ciphertext unless it changed meanwhile."""
    stmt = (
        update(OAuthState)
        .where(col(OAuthState.id) == state_id, col(OAuthState.code_verifier_encrypted) == expected)
        .values(code_verifier_encrypted=ciphertext)
        .returning(col(OAuthState.id))
    )
    result = await session.execute(stmt.execution_options(**_NO_SYNC))
    return result.scalar_one_or_none() is not None


# --- audit ------------------------------------------------------------------------------------


async def list_audit_logs(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    provider_id: uuid.UUID,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None = None,
) -> Sequence[ProviderAuditLog]:
    """A provider's audit rows, newest first, after a keyset position.

    Scoped by `user_id` as well as the provider, so rows of a deleted provider stay private.
    """
    stmt = select(ProviderAuditLog).where(
        col(ProviderAuditLog.user_id) == user_id, col(ProviderAuditLog.provider_id) == provider_id
    )
    if before is not None:
        stmt = stmt.where(
            tuple_(col(ProviderAuditLog.created_at), col(ProviderAuditLog.id)) < tuple_(*before)
        )
    stmt = stmt.order_by(col(ProviderAuditLog.created_at).desc(), col(ProviderAuditLog.id).desc())
    return (await session.execute(stmt.limit(limit))).scalars().all()
