"""Pure pieces of the connections domain: states, PKCE, audit details, cursors, pages."""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from dashtam.callback.app import provider_id_of
from dashtam.callback.pages import render_result_page
from dashtam.core.errors import BadRequest
from dashtam.core.tokens import new_opaque_token
from dashtam.services.connections.audit import safe_details
from dashtam.services.connections.authorization import parse_state, pkce_pair
from dashtam.services.connections.service import decode_cursor, encode_cursor
from dashtam.services.connections.tokens import TokenSnapshot, refresh_outcome

_PID = "2f1d6c3e-8a4b-4c1e-9d7f-0a1b2c3d4e5f"
_TOKEN = "Yq3vZk9rT2mYp4LwN8sB1cH6dF0gJ5aE7uQiRoK2eXo"


class TestParseState:
    def test_reads_the_provider_id_of_a_well_formed_state(self) -> None:
        provider_id = uuid.uuid4()

        assert parse_state(f"{provider_id}.{new_opaque_token()}") == provider_id

    # Fixed values: xdist workers must collect identical test ids.
    @pytest.mark.parametrize(
        "state",
        [
            None,
            "",
            "no-dot",
            f"{_PID}.short",
            f"{_PID}.{_TOKEN}x",
            f"{_PID.upper()}.{_TOKEN}",
            f"not-a-uuid.{_TOKEN}",
            f"{_PID}.{'a' * 42}+",
        ],
        ids=["none", "empty", "no-dot", "short", "too-long", "upper-uuid", "bad-uuid", "bad-char"],
    )
    def test_rejects_anything_else(self, state: str | None) -> None:
        assert parse_state(state) is None


class TestPkcePair:
    def test_challenge_is_the_s256_of_the_verifier(self) -> None:
        verifier, challenge = pkce_pair()

        expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        assert challenge == expected.decode().rstrip("=")
        assert 43 <= len(verifier) <= 128

    def test_pairs_are_unique(self) -> None:
        assert pkce_pair()[0] != pkce_pair()[0]


class TestSafeDetails:
    def test_drops_secret_looking_keys_and_truncates(self) -> None:
        details = safe_details(
            {
                "access_token": "I0.secret",
                "code": "C0.secret",
                "state": "x.y",
                "code_verifier": "v",
                "reason": "r" * 500,
                "refresh_count": 3,
                "provider_key": "schwab",
                "nested": {"a": 1},
            }
        )

        assert set(details) == {"reason", "refresh_count", "provider_key", "nested"}
        assert len(details["reason"]) == 200
        assert details["nested"] == "{'a': 1}"


class TestRefreshOutcome:
    @pytest.mark.parametrize(
        ("old", "new", "outcome"),
        [("r1", "r2", "rotated"), ("r1", "r1", "unchanged"), ("r1", None, "not_returned")],
    )
    def test_classifies_the_three_modes(self, old: str, new: str | None, outcome: str) -> None:
        assert refresh_outcome(old, new) == outcome


class TestTokenSnapshot:
    def _snapshot(
        self, expires: datetime | None, refresh_expires: datetime | None = None
    ) -> TokenSnapshot:
        return TokenSnapshot(
            provider_id=uuid.uuid4(),
            user_id=uuid.uuid4(),
            provider_key="schwab",
            status="active",
            row_id=uuid.uuid4(),
            access_token="secret-access",
            refresh_token="secret-refresh",
            access_ciphertext="v1.k.x",
            access_expires_at=expires,
            refresh_expires_at=refresh_expires,
            scope="api",
            refresh_count=0,
            refreshed_at=None,
            connected_at=None,
        )

    def test_freshness_honours_the_margin(self) -> None:
        now = datetime(2026, 1, 1, tzinfo=UTC)
        margin = timedelta(minutes=5)

        assert self._snapshot(now + timedelta(minutes=6)).is_fresh(now, margin)
        assert not self._snapshot(now + timedelta(minutes=4)).is_fresh(now, margin)
        assert self._snapshot(now + timedelta(minutes=4)).is_usable(now)
        assert self._snapshot(None).is_fresh(now, margin)
        assert self._snapshot(now, now).refresh_expired(now)

    def test_repr_never_shows_tokens(self) -> None:
        text = repr(self._snapshot(None))

        assert "secret" not in text


class TestCursor:
    def test_round_trips(self) -> None:
        when, row_id = datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC), uuid.uuid4()

        assert decode_cursor(encode_cursor(when, row_id)) == (when, row_id)

    @pytest.mark.parametrize(
        "cursor", ["", "!!", "bm9wZQ", base64.b64encode(b"2026-01-01|x").decode()]
    )
    def test_garbage_is_a_400(self, cursor: str) -> None:
        with pytest.raises(BadRequest) as caught:
            decode_cursor(cursor)
        assert caught.value.code == "invalid_cursor"


class TestResultPage:
    def test_escapes_every_value(self) -> None:
        page = render_result_page(
            ok=False, title="<b>t</b>", message="<script>alert(1)</script>", reference='"><x'
        )

        assert "<script>" not in page
        assert "&lt;script&gt;" in page
        assert "&lt;b&gt;" in page
        assert '"><x' not in page
        assert 'data-outcome="failed"' in page


class TestCallbackStatePrefix:
    def test_reads_the_prefix_and_refuses_junk(self) -> None:
        provider_id = uuid.uuid4()

        assert provider_id_of(f"{provider_id}.anything") == provider_id
        assert provider_id_of("junk.value") is None
        assert provider_id_of(None) is None
        assert provider_id_of(str(provider_id)) is None
