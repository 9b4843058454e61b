"""Simulator state: clock, codes and tokens with Schwab's lifetimes, faults, the rate limiter."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from dashtam.simulator.state import (
    CODE_RETENTION,
    CODE_TTL,
    CodeError,
    Fault,
    FaultBoard,
    RateLimiter,
    RefreshError,
    SimClock,
    TokenStore,
)

T0 = datetime(2025, 6, 16, 12, 0, tzinfo=UTC)
REDIRECT = "https://127.0.0.1:8182"


def logged_in(store: TokenStore, username: str = "demo") -> tuple[str, str]:
    code = store.issue_code(username, "app", REDIRECT, T0)
    store.redeem_code(code, "app", REDIRECT, T0)
    return store.login(username, "app", T0)


class TestSimClock:
    def test_stands_still_until_advanced(self) -> None:
        clock = SimClock(T0)
        assert clock.now() == T0
        assert clock.advance(90) == T0 + timedelta(seconds=90)
        assert clock.now() == T0 + timedelta(seconds=90)

    def test_refuses_to_go_back_and_resets_to_the_start(self) -> None:
        clock = SimClock(T0)
        clock.advance(10)
        with pytest.raises(ValueError, match="forward"):
            clock.advance(-1)
        clock.reset()
        assert clock.now() == T0


class TestCodes:
    def test_code_has_the_schwab_shape(self) -> None:
        code = TokenStore().issue_code("demo", "app", REDIRECT, T0)
        assert re.fullmatch(r"C0\.b2F1dGgyLmJkYy5zY2h3YWIuY29t\.[A-Za-z0-9_-]{43}@", code)

    def test_code_works_once(self) -> None:
        store = TokenStore()
        code = store.issue_code("demo", "app", REDIRECT, T0)
        assert store.redeem_code(code, "app", REDIRECT, T0).username == "demo"
        with pytest.raises(CodeError, match="already been used"):
            store.redeem_code(code, "app", REDIRECT, T0)

    def test_code_expires_after_30_seconds(self) -> None:
        store = TokenStore()
        code = store.issue_code("demo", "app", REDIRECT, T0)
        with pytest.raises(CodeError, match="expired"):
            store.redeem_code(code, "app", REDIRECT, T0 + timedelta(seconds=30))
        fresh = store.issue_code("demo", "app", REDIRECT, T0)
        store.redeem_code(fresh, "app", REDIRECT, T0 + timedelta(seconds=29))

    def test_long_expired_codes_are_forgotten_without_scanning_live_ones(self) -> None:
        store = TokenStore()
        old = store.issue_code("demo", "app", REDIRECT, T0)
        later = T0 + CODE_TTL + CODE_RETENTION
        recent = store.issue_code("demo", "app", REDIRECT, later - timedelta(seconds=1))
        store.issue_code("demo", "app", REDIRECT, later)
        assert old not in store.codes
        assert recent in store.codes
        with pytest.raises(CodeError, match="expired"):
            store.redeem_code(recent, "app", REDIRECT, later + CODE_TTL)

    @pytest.mark.parametrize(
        ("client", "redirect"),
        [("other-app", REDIRECT), ("app", REDIRECT + "/"), ("app", None)],
    )
    def test_code_is_bound_to_client_and_redirect_uri(
        self, client: str, redirect: str | None
    ) -> None:
        store = TokenStore()
        code = store.issue_code("demo", "app", REDIRECT, T0)
        with pytest.raises(CodeError):
            store.redeem_code(code, client, redirect, T0)


class TestTokens:
    def test_access_token_lives_30_minutes(self) -> None:
        store = TokenStore()
        access, _ = logged_in(store)
        assert store.authenticate(access, T0 + timedelta(minutes=29, seconds=59)) is not None
        assert store.authenticate(access, T0 + timedelta(minutes=30)) is None

    def test_same_mode_returns_the_same_refresh_token(self) -> None:
        store = TokenStore()
        _, refresh = logged_in(store)
        access, returned = store.use_refresh(refresh, "app", T0, "same")
        assert returned == refresh
        assert store.authenticate(access, T0) is not None

    def test_rotate_mode_kills_the_old_token_and_keeps_the_7_day_wall(self) -> None:
        store = TokenStore()
        _, refresh = logged_in(store)
        _, rotated = store.use_refresh(refresh, "app", T0 + timedelta(days=3), "rotate")
        assert rotated is not None and rotated != refresh
        with pytest.raises(RefreshError):
            store.use_refresh(refresh, "app", T0 + timedelta(days=3), "same")
        with pytest.raises(RefreshError):
            store.use_refresh(rotated, "app", T0 + timedelta(days=7), "same")

    def test_omit_mode_returns_no_refresh_token(self) -> None:
        store = TokenStore()
        _, refresh = logged_in(store)
        assert store.use_refresh(refresh, "app", T0, "omit")[1] is None
        store.use_refresh(refresh, "app", T0, "same")  # still usable

    def test_refreshing_does_not_move_the_7_day_wall(self) -> None:
        store = TokenStore()
        _, refresh = logged_in(store)
        for day in range(1, 7):
            store.use_refresh(refresh, "app", T0 + timedelta(days=day), "same")
        with pytest.raises(RefreshError):
            store.use_refresh(refresh, "app", T0 + timedelta(days=7), "same")

    def test_new_login_invalidates_older_refresh_tokens_of_that_user_only(self) -> None:
        store = TokenStore()
        _, old = logged_in(store)
        _, whale = logged_in(store, "whale")
        _, new = logged_in(store)
        with pytest.raises(RefreshError):
            store.use_refresh(old, "app", T0, "same")
        store.use_refresh(new, "app", T0, "same")
        store.use_refresh(whale, "app", T0, "same")

    def test_new_login_also_kills_the_rotated_successors(self) -> None:
        store = TokenStore()
        _, first = logged_in(store)
        _, rotated = store.use_refresh(first, "app", T0, "rotate")
        assert rotated is not None
        _, new = logged_in(store)
        with pytest.raises(RefreshError):
            store.use_refresh(rotated, "app", T0, "same")
        store.use_refresh(new, "app", T0, "same")

    def test_control_actions(self) -> None:
        store = TokenStore()
        access, refresh = logged_in(store)
        assert store.apply("demo", "expire-access", T0) == 1
        assert store.authenticate(access, T0) is None
        assert store.apply("demo", "expire-refresh", T0) == 1
        with pytest.raises(RefreshError):
            store.use_refresh(refresh, "app", T0, "same")
        _, again = logged_in(store)
        assert store.apply("demo", "revoke-refresh", T0) == 1
        with pytest.raises(RefreshError):
            store.use_refresh(again, "app", T0, "same")


class TestFaultBoard:
    def test_fault_fires_count_times_on_matching_paths_only(self) -> None:
        board = FaultBoard()
        board.add(Fault(kind="status", remaining=2, path_prefix="/trader"))
        assert board.take("/v1/oauth/token") is None
        assert board.take("/trader/v1/accounts") is not None
        assert board.take("/trader/v1/userPreference") is not None
        assert board.take("/trader/v1/accounts") is None
        assert board.injected == 2


class TestRateLimiter:
    def test_allows_the_limit_then_answers_with_a_wait_until_the_clock_moves(self) -> None:
        clock = SimClock(T0)
        limiter = RateLimiter(3, clock)
        assert [limiter.hit("a") for _ in range(3)] == [None, None, None]
        wait = limiter.hit("a")
        assert wait is not None and 0 < wait <= 60
        assert limiter.hit("b") is None
        clock.advance(60)
        assert limiter.hit("a") is None
