"""The authenticated hot path's profile read: straight through asyncpg on PostgreSQL, Core on
SQLite; either way the same values as the ORM-side statement."""

from __future__ import annotations

import uuid
from datetime import UTC

from dashtam.core.state import AppResources
from dashtam.services.auth import repository
from dashtam.services.auth.profile import load_profile
from tests.support.factories import seed_login


class TestProfileRead:
    async def test_matches_the_core_statement_column_for_column(
        self, resources: AppResources
    ) -> None:
        login = await seed_login(resources)
        async with resources.read_connection() as connection:
            fast = await repository.read_profile(connection, user_id=login.user.id)
            core = await repository.get_profile(connection, user_id=login.user.id)

        assert core is not None and fast is not None
        assert fast == core._asdict()
        assert fast["id"] == login.user.id
        assert fast["created_at"].tzinfo is not None
        assert fast["created_at"].utcoffset() == UTC.utcoffset(None)

    async def test_builds_the_profile_and_answers_none_for_an_unknown_user(
        self, resources: AppResources
    ) -> None:
        login = await seed_login(resources)
        async with resources.read_connection() as connection:
            profile = await load_profile(connection, user_id=login.user.id)
            missing = await load_profile(connection, user_id=uuid.uuid4())

        assert profile is not None
        assert (profile.id, profile.email, profile.is_active) == (
            login.user.id,
            login.user.email,
            True,
        )
        assert missing is None
