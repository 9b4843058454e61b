"""Connection notices: warn an account holder before the refresh-token wall, and when it hits.

Schwab's refresh token dies seven days after the interactive login, whatever we do; the one
useful thing is to say so in time. Each notice is sent at most once per connection and
episode (one login): a `provider_notices` row is inserted with `ON CONFLICT DO NOTHING`, and
only the inserter sends the email, after its unit of work commits.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from dashtam.core.database import after_commit, session_scope
from dashtam.core.logging import log_event
from dashtam.core.state import AppResources
from dashtam.models.provider import Provider, ProviderStatus, ProviderToken
from dashtam.models.sync import NoticeKind, ProviderNotice
from dashtam.models.user import User
from dashtam.providers.registry import registry_from
from dashtam.services.email.render import clean_display_text

logger = logging.getLogger("dashtam.sync.notices")

_providers = Provider.__table__  # type: ignore[attr-defined]
_tokens = ProviderToken.__table__  # type: ignore[attr-defined]
_users = User.__table__  # type: ignore[attr-defined]
_notices = ProviderNotice.__table__  # type: ignore[attr-defined]

#: Longest list of notices handled per tick (the rest wait for the next tick).
BATCH_LIMIT = 200


@dataclass(frozen=True)
class Notice:
    """One notice to send."""

    provider_id: uuid.UUID
    kind: NoticeKind
    episode: str
    email: str
    name: str | None
    alias: str
    provider_key: str
    refresh_expires_at: datetime | None


def _insert(session: AsyncSession, table: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def _candidates(
    session: AsyncSession, *, now: datetime, warn_within: timedelta
) -> list[Notice]:
    columns = (
        _providers.c.id,
        _providers.c.status,
        _providers.c.alias,
        _providers.c.provider_key,
        _tokens.c.issued_at,
        _tokens.c.refresh_expires_at,
        _users.c.email,
        _users.c.name,
    )
    soon = and_(
        _providers.c.status == ProviderStatus.ACTIVE.value,
        _tokens.c.refresh_expires_at > now,
        _tokens.c.refresh_expires_at <= now + warn_within,
    )
    required = or_(
        _providers.c.status == ProviderStatus.REAUTH_REQUIRED.value,
        and_(
            _providers.c.status == ProviderStatus.ACTIVE.value,
            _tokens.c.refresh_expires_at <= now,
        ),
    )
    stmt = (
        select(*columns)
        .select_from(
            _providers.join(_tokens, _tokens.c.provider_id == _providers.c.id).join(
                _users, _users.c.id == _providers.c.user_id
            )
        )
        .where(or_(soon, required), _users.c.is_active.is_(True))
        .limit(BATCH_LIMIT)
    )
    found: list[Notice] = []
    for row in (await session.execute(stmt)).all():
        expired = row.refresh_expires_at is not None and row.refresh_expires_at <= now
        kind = (
            NoticeKind.REAUTH_REQUIRED
            if row.status == ProviderStatus.REAUTH_REQUIRED.value or expired
            else NoticeKind.REAUTH_SOON
        )
        found.append(
            Notice(
                provider_id=row.id,
                kind=kind,
                episode=row.issued_at.isoformat(),
                email=row.email,
                name=row.name,
                alias=row.alias,
                provider_key=row.provider_key,
                refresh_expires_at=row.refresh_expires_at,
            )
        )
    return found


async def send_due_notices(resources: AppResources, *, now: datetime) -> int:
    """Send every reauth notice that is due and was not sent in this episode.

    Returns:
        How many notices were sent.
    """
    settings = resources.settings
    warn_within = timedelta(hours=settings.reauth_warning_hours)
    sent = 0
    async with session_scope(resources.session_factory) as session:
        for notice in await _candidates(session, now=now, warn_within=warn_within):
            stmt = (
                _insert(session, _notices)
                .values(
                    id=uuid.uuid4(),
                    provider_id=notice.provider_id,
                    kind=notice.kind.value,
                    episode=notice.episode,
                    sent_at=now,
                )
                .on_conflict_do_nothing(
                    index_elements=[_notices.c.provider_id, _notices.c.kind, _notices.c.episode]
                )
                .returning(_notices.c.id)
            )
            if (await session.execute(stmt)).first() is None:
                continue  # already told in this episode
            sent += 1
            after_commit(session, _mailer(resources, notice))
    return sent


def _mailer(resources: AppResources, notice: Notice) -> Any:
    async def send() -> None:
        email = resources.extras.get("email")
        if email is None:
            from dashtam.services.email import build_email_service

            email = build_email_service(resources.settings)
            resources.extras["email"] = email
        provider = registry_from(resources).find(notice.provider_key)
        institution = provider.display_name if provider is not None else notice.provider_key
        wall = (
            provider.refresh_token_max_age
            if provider is not None and provider.refresh_token_max_age is not None
            else None
        )
        await email.send_template(
            notice.email,
            notice.kind.value,
            name=notice.name,
            alias=clean_display_text(notice.alias),
            institution=institution,
            expires_at=(
                notice.refresh_expires_at.strftime("%Y-%m-%d %H:%M")
                if notice.refresh_expires_at
                else "soon"
            ),
            wall=f"{wall.days} days" if wall is not None else "so often",
        )
        log_event(
            logger,
            "sync.notice.sent",
            provider_id=str(notice.provider_id),
            kind=notice.kind.value,
        )

    return send
