"""The authenticated hot path's one SELECT: the profile and the token's session together.
Straight through asyncpg on PostgreSQL, Core on SQLite; either way the same values."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from dashtam.core.database import session_scope
from dashtam.core.state import AppResources
from dashtam.core.types import utcnow
from dashtam.models.auth import AuthSession
from dashtam.models.user import User
from dashtam.services.auth import repository
from dashtam.services.auth.profile import load_live_profile
from tests.support.factories import seed_login


class TestReadPrincipal:
    async def test_matches_the_core_statement_column_for_column(
        self, resources: AppResources
    ) -> None:
        login = await seed_login(resources)
        tokens = login.tokens
        ids = {"user_id": tokens.user_id, "session_id": tokens.session_id}
        values = await repository.read_principal(resources.engine, **ids)
        async with resources.engine.connect() as connection:
            core = (await connection.execute(repository._PRINCIPAL, ids)).one()

        assert values == core._asdict()
        assert values["session_user_id"] == tokens.user_id
        assert values["session_revoked_at"] is None
        assert values["session_expires_at"] > utcnow()
        assert values["created_at"].utcoffset() == UTC.utcoffset(None)

    async def test_unknown_session_reads_nulls_and_unknown_user_nothing(
        self, resources: AppResources
    ) -> None:
        login = await seed_login(resources)
        no_session = await repository.read_principal(
            resources.engine, user_id=login.user.id, session_id=uuid.uuid4()
        )
        no_user = await repository.read_principal(
            resources.engine, user_id=uuid.uuid4(), session_id=login.tokens.session_id
        )

        assert no_session is not None and no_session["session_user_id"] is None
        assert no_user is None


class TestLoadLiveProfile:
    async def test_live_session_gives_the_profile(self, resources: AppResources) -> None:
        login = await seed_login(resources)
        profile = await load_live_profile(
            resources.engine,
            user_id=login.user.id,
            session_id=login.tokens.session_id,
            now=utcnow(),
        )

        assert profile is not None
        assert (profile.id, profile.email, profile.is_active) == (
            login.user.id,
            login.user.email,
            True,
        )

    async def test_revoked_expired_foreign_or_disabled_give_nothing(
        self, resources: AppResources
    ) -> None:
        login, other = await seed_login(resources), await seed_login(resources)
        now = utcnow()

        async def live(
            user_id: uuid.UUID, session_id: uuid.UUID, at: datetime | None = None
        ) -> bool:
            profile = await load_live_profile(
                resources.engine, user_id=user_id, session_id=session_id, now=at or now
            )
            return profile is not None

        # Another user's session never authenticates this user.
        assert not await live(login.user.id, other.tokens.session_id)
        # Past the session's absolute expiry.
        assert not await live(login.user.id, login.tokens.session_id, now + timedelta(days=31))
        async with session_scope(resources.session_factory) as session:
            row = await session.get(AuthSession, login.tokens.session_id)
            assert row is not None
            row.revoked_at = now
            user = await session.get(User, other.user.id)
            assert user is not None
            user.is_active = False
        assert not await live(login.user.id, login.tokens.session_id)
        assert not await live(other.user.id, other.tokens.session_id)
