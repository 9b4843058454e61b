"""Providers as resources: create, list, read, rename, delete, disconnect, status, audit trail.

Every method is scoped to the calling user: another user's provider is "not found". Methods
work inside the request's unit of work and only `flush()`.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.core.errors import BadRequest
from dashtam.core.state import AppResources
from dashtam.core.types import utcnow
from dashtam.models.provider import Provider, ProviderAuditLog, ProviderStatus
from dashtam.providers.base import Provider as ProviderClient
from dashtam.providers.errors import ProviderNotConfigured, UnknownProvider, to_app_error
from dashtam.services.connections import events
from dashtam.services.connections import repository as repo
from dashtam.services.connections.audit import AuditAction, AuditOrigin, record
from dashtam.services.connections.context import providers_of
from dashtam.services.connections.errors import (
    AliasTaken,
    ProviderNotFound,
    ProviderTypeNotFound,
)


@dataclass(frozen=True)
class AuthorizationState:
    """What a client may know about a provider's authorization (never a token)."""

    status: str
    connected_at: datetime | None
    access_expires_at: datetime | None
    refresh_expires_at: datetime | None
    scope: str | None
    last_refreshed_at: datetime | None
    refresh_count: int


@dataclass(frozen=True)
class AuditPage:
    """One page of audit rows, newest first."""

    items: Sequence[ProviderAuditLog]
    next_cursor: str | None


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    """An opaque keyset cursor for (created_at, id)."""
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Read a cursor made by `encode_cursor`.

    Raises:
        BadRequest: `invalid_cursor` for anything else.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, row_id = raw.partition("|")
        when = datetime.fromisoformat(stamp)
        if when.tzinfo is None:
            raise ValueError("naive")
        return when, uuid.UUID(row_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("The cursor is not valid.", code="invalid_cursor") from None


def provider_types(resources: AppResources) -> list[dict[str, Any]]:
    """Every institution this server offers, configured or not."""
    return providers_of(resources).describe()


def provider_type(resources: AppResources, key: str) -> dict[str, Any]:
    """One institution by key.

    Raises:
        ProviderTypeNotFound: No such key.
    """
    registry = providers_of(resources)
    client = registry.find(key)
    if client is None:
        raise ProviderTypeNotFound()
    return registry.describe_provider(client)


class ConnectionService:
    """CRUD and status of the caller's providers."""

    def __init__(
        self, session: AsyncSession, resources: AppResources, *, origin: AuditOrigin
    ) -> None:
        self._session = session
        self._resources = resources
        self._origin = origin

    def client_for(self, provider_key: str) -> ProviderClient:
        """The configured institution client for a key.

        Raises:
            AppError: 400 `unknown_provider` or `provider_not_configured`.
        """
        try:
            client = providers_of(self._resources).get(provider_key)
        except UnknownProvider as exc:
            raise to_app_error(exc) from exc
        if not client.is_configured:
            raise to_app_error(ProviderNotConfigured(provider=provider_key))
        return client

    async def create(self, *, user_id: uuid.UUID, provider_key: str, alias: str) -> Provider:
        """Create a `pending` provider.

        Raises:
            AppError: 400 `unknown_provider` / `provider_not_configured`; 409 `alias_taken`.
        """
        self.client_for(provider_key)
        if await repo.alias_in_use(self._session, user_id=user_id, alias=alias):
            raise AliasTaken()
        provider = Provider(user_id=user_id, provider_key=provider_key, alias=alias)
        try:
            # A savepoint, so losing a race for the alias does not poison the unit of work.
            async with self._session.begin_nested():
                self._session.add(provider)
                await self._session.flush()
        except IntegrityError as exc:
            raise AliasTaken() from exc
        record(
            self._session,
            provider_id=provider.id,
            user_id=user_id,
            action=AuditAction.CREATED,
            origin=self._origin,
            details={"provider_key": provider_key, "alias": alias},
        )
        await self._session.flush()
        return provider

    async def list(
        self,
        *,
        user_id: uuid.UUID,
        status: ProviderStatus | None = None,
        provider_key: str | None = None,
    ) -> Sequence[Provider]:
        """The caller's providers, oldest first."""
        return await repo.list_providers(
            self._session,
            user_id=user_id,
            status=status.value if status is not None else None,
            provider_key=provider_key,
        )

    async def get(self, *, user_id: uuid.UUID, provider_id: uuid.UUID) -> Provider:
        """One of the caller's providers.

        Raises:
            ProviderNotFound: Missing or someone else's.
        """
        provider = await repo.get_provider_for_user(
            self._session, user_id=user_id, provider_id=provider_id
        )
        if provider is None:
            raise ProviderNotFound()
        return provider

    async def rename(self, *, user_id: uuid.UUID, provider_id: uuid.UUID, alias: str) -> Provider:
        """Change the alias.

        Raises:
            ProviderNotFound: Missing or someone else's.
            AliasTaken: Another of the caller's providers has it.
        """
        provider = await self.get(user_id=user_id, provider_id=provider_id)
        if provider.alias == alias:
            return provider
        if await repo.alias_in_use(
            self._session, user_id=user_id, alias=alias, exclude_id=provider_id
        ):
            raise AliasTaken()
        previous = provider.alias
        try:
            async with self._session.begin_nested():
                provider.alias = alias
                provider.updated_at = utcnow()
                await self._session.flush()
        except IntegrityError as exc:
            raise AliasTaken() from exc
        record(
            self._session,
            provider_id=provider.id,
            user_id=user_id,
            action=AuditAction.RENAMED,
            origin=self._origin,
            details={"from": previous, "to": alias},
        )
        await self._session.flush()
        return provider

    async def delete(self, *, user_id: uuid.UUID, provider_id: uuid.UUID, purge: bool) -> None:
        """Delete the provider and destroy its tokens (the audit trail stays).

        Raises:
            ProviderNotFound: Missing or someone else's.
        """
        provider = await self.get(user_id=user_id, provider_id=provider_id)
        key = provider.provider_key
        await events.on_deleting(self._session, provider_id, purge=purge)
        # The ORM object goes first so the identity map never flushes a stale row back.
        self._session.expunge(provider)
        await repo.delete_provider(self._session, provider_id=provider_id)
        record(
            self._session,
            provider_id=provider_id,
            user_id=user_id,
            action=AuditAction.DELETED,
            origin=self._origin,
            details={"provider_key": key, "purge": purge},
        )
        await self._session.flush()

    async def authorization_state(
        self, *, user_id: uuid.UUID, provider_id: uuid.UUID
    ) -> AuthorizationState:
        """The provider's authorization status (expiries, scope, last refresh)."""
        provider = await self.get(user_id=user_id, provider_id=provider_id)
        return await self.state_of(provider)

    async def state_of(self, provider: Provider) -> AuthorizationState:
        """The authorization status of an already-loaded provider."""
        tokens = await repo.get_tokens(self._session, provider_id=provider.id)
        return AuthorizationState(
            status=provider.status,
            connected_at=provider.connected_at,
            access_expires_at=tokens.access_expires_at if tokens else None,
            refresh_expires_at=tokens.refresh_expires_at if tokens else None,
            scope=tokens.scope if tokens else None,
            last_refreshed_at=tokens.refreshed_at if tokens else None,
            refresh_count=tokens.refresh_count if tokens else 0,
        )

    async def disconnect(self, *, user_id: uuid.UUID, provider_id: uuid.UUID) -> None:
        """Destroy the tokens and pending states; the provider stays, `disconnected`.

        Raises:
            ProviderNotFound: Missing or someone else's.
        """
        provider = await self.get(user_id=user_id, provider_id=provider_id)
        destroyed = await repo.delete_tokens(self._session, provider_id=provider_id)
        await repo.delete_states(self._session, provider_id=provider_id)
        provider.status = ProviderStatus.DISCONNECTED.value
        provider.last_error = None
        provider.updated_at = utcnow()
        record(
            self._session,
            provider_id=provider_id,
            user_id=user_id,
            action=AuditAction.DISCONNECTED,
            origin=self._origin,
            details={"tokens_destroyed": destroyed > 0},
        )
        await self._session.flush()

    async def audit_logs(
        self,
        *,
        user_id: uuid.UUID,
        provider_id: uuid.UUID,
        limit: int,
        cursor: str | None,
    ) -> AuditPage:
        """The provider's audit trail, newest first.

        Rows of a deleted provider remain readable by their owner; for an id that is neither
        the caller's provider nor in the caller's trail, the answer is "not found".
        """
        before = decode_cursor(cursor) if cursor else None
        rows = await repo.list_audit_logs(
            self._session, user_id=user_id, provider_id=provider_id, limit=limit + 1, before=before
        )
        if not rows and before is None:
            # Nothing in the trail: 404 unless the provider is the caller's (a fresh one).
            await self.get(user_id=user_id, provider_id=provider_id)
        has_more = len(rows) > limit
        items = rows[:limit]
        next_cursor = (
            encode_cursor(items[-1].created_at, items[-1].id) if has_more and items else None
        )
        return AuditPage(items=items, next_cursor=next_cursor)
