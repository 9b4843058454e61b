"""Values providers return: token sets that never show their secrets."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from dashtam.providers.base import TokenSet
from tests.unit.providers.support import capture, rendered_logs

ISSUED = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)


def make_tokens(**overrides: object) -> TokenSet:
    values: dict[str, object] = {
        "access_token": "I0.ACCESS-SECRET@",
        "refresh_token": "REFRESH-SECRET@",
        "id_token": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlX3NlY3JldA",
        "expires_in": 1800,
        "scope": "api",
        "issued_at": ISSUED,
    }
    values.update(overrides)
    return TokenSet(**values)  # type: ignore[arg-type]


class TestTokenSet:
    def test_access_expiry_counts_from_issue_time(self) -> None:
        assert make_tokens().access_expires_at == ISSUED + timedelta(seconds=1800)

    def test_unknown_lifetime_has_no_expiry(self) -> None:
        assert make_tokens(expires_in=None).access_expires_at is None

    @pytest.mark.parametrize("render", [repr, str, lambda t: f"{t}", lambda t: f"{[t]!r}"])
    def test_secrets_never_appear_in_text_forms(self, render: object) -> None:
        text = render(make_tokens())  # type: ignore[operator]
        for secret in ("ACCESS-SECRET", "REFRESH-SECRET", "eyJhbGci", "c2lnbmF0dXJl"):
            assert secret not in text
        assert "expires_in=1800" in text

    def test_repr_says_when_no_refresh_token_came_back(self) -> None:
        assert "refresh_token=None" in repr(make_tokens(refresh_token=None))

    def test_logging_a_token_set_leaks_nothing(self, caplog: pytest.LogCaptureFixture) -> None:
        capture(caplog)
        tokens = make_tokens()
        logging.getLogger("dashtam.test").info("tokens %s", tokens, extra={"fields": {"t": tokens}})
        text = rendered_logs(caplog)
        assert "ACCESS-SECRET" not in text and "REFRESH-SECRET" not in text
