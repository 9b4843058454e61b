"""The cached "is this session live" check: revocation wins over the cache, the KV store is
optional, and "live" is never cached past the session's expiry."""

from __future__ import annotations

from datetime import timedelta

from dashtam.core.database import session_scope
from dashtam.core.state import AppResources
from dashtam.core.types import utcnow
from dashtam.services.auth import session_state
from dashtam.services.auth.sessions import revoke_user_sessions
from dashtam.services.auth.toolkit import AuthToolkit, ClientInfo
from tests.api.auth.conftest import UnreachableKeyValueStore
from tests.support.factories import seed_login, toolkit_for


async def _live(resources: AppResources, toolkit: AuthToolkit, login: object) -> bool:
    tokens = login.tokens  # type: ignore[attr-defined]
    return await session_state.is_session_live(
        toolkit,
        resources.session_factory,
        session_id=tokens.session_id,
        user_id=tokens.user_id,
        now=utcnow(),
    )


class TestSessionState:
    async def test_revocation_overrides_a_cached_live_state(self, resources: AppResources) -> None:
        toolkit = toolkit_for(resources.settings, resources.kv)
        login = await seed_login(resources)
        assert await _live(resources, toolkit, login) is True
        cached = await resources.kv.get(session_state.cache_key(login.tokens.session_id))
        assert cached == login.user.id.hex.encode()

        async with session_scope(resources.session_factory) as session:
            await revoke_user_sessions(
                session,
                toolkit,
                user_id=login.user.id,
                reason="test",
                client=ClientInfo(),
                now=utcnow(),
            )

        assert await _live(resources, toolkit, login) is False

    async def test_reads_the_database_when_the_kv_store_is_down(
        self, resources: AppResources
    ) -> None:
        toolkit = toolkit_for(resources.settings, UnreachableKeyValueStore())  # type: ignore[arg-type]
        login = await seed_login(resources)
        assert await _live(resources, toolkit, login) is True

        async with session_scope(resources.session_factory) as session:
            await revoke_user_sessions(
                session,
                toolkit,
                user_id=login.user.id,
                reason="test",
                client=ClientInfo(),
                now=utcnow(),
            )

        assert await _live(resources, toolkit, login) is False

    async def test_live_is_not_cached_past_the_session_expiry(
        self, resources: AppResources
    ) -> None:
        toolkit = toolkit_for(resources.settings, resources.kv)
        # Logged in almost 30 days ago: five seconds of session left.
        login = await seed_login(
            resources, now=utcnow() - toolkit.session_lifetime + timedelta(seconds=5)
        )

        assert await _live(resources, toolkit, login) is True
        remaining = await resources.kv.ttl(session_state.cache_key(login.tokens.session_id))
        assert remaining is not None
        assert remaining <= 5

    async def test_a_session_of_another_user_is_not_live(self, resources: AppResources) -> None:
        toolkit = toolkit_for(resources.settings, resources.kv)
        login = await seed_login(resources)
        other = await seed_login(resources)

        live = await session_state.is_session_live(
            toolkit,
            resources.session_factory,
            session_id=login.tokens.session_id,
            user_id=other.user.id,
            now=utcnow(),
        )

        assert live is False
        assert await _live(resources, toolkit, login) is True
