"""Who may read `/metrics`: allowed networks, the bearer token, or both."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dashtam.core.config import Settings
from dashtam.core.observability.http import MetricsAccess, route_template

TOKEN = "s3cret-metrics-token-0123456789abcdef"


def access(**overrides: object) -> MetricsAccess:
    return MetricsAccess.from_settings(Settings(**overrides))  # type: ignore[arg-type]


class TestAddresses:
    def test_default_is_loopback_only(self) -> None:
        rule = access()
        assert rule.allows("127.0.0.1", None)
        assert rule.allows("::1", None)
        assert not rule.allows("203.0.113.10", None)
        assert not rule.allows("unknown", None)

    def test_cidrs_and_mapped_ipv4(self) -> None:
        rule = access(metrics_allowed_ips="10.0.0.0/8, 2001:db8::/32")
        assert rule.allows("10.1.2.3", None)
        assert rule.allows("::ffff:10.1.2.3", None)
        assert rule.allows("2001:db8::5", None)
        assert not rule.allows("11.0.0.1", None)

    def test_empty_list_without_token_admits_nobody(self) -> None:
        rule = access(metrics_allowed_ips="")
        assert not rule.allows("127.0.0.1", None)

    def test_garbage_is_refused_at_start_up(self) -> None:
        with pytest.raises(ValidationError, match="not an IP address or CIDR"):
            Settings(metrics_allowed_ips="localhost")


class TestToken:
    def test_token_and_address_both_required(self) -> None:
        rule = access(metrics_bearer_token=TOKEN)
        assert rule.allows("127.0.0.1", f"Bearer {TOKEN}")
        assert rule.allows("127.0.0.1", f"bearer {TOKEN}")
        assert not rule.allows("127.0.0.1", None)
        assert not rule.allows("127.0.0.1", "Bearer wrong")
        assert not rule.allows("127.0.0.1", f"Basic {TOKEN}")
        assert not rule.allows("203.0.113.10", f"Bearer {TOKEN}")

    def test_token_only_from_anywhere(self) -> None:
        rule = access(metrics_bearer_token=TOKEN, metrics_allowed_ips="")
        assert rule.allows("203.0.113.10", f"Bearer {TOKEN}")
        assert not rule.allows("203.0.113.10", "Bearer ")
        assert not rule.allows("127.0.0.1", None)


class TestRouteTemplate:
    def test_unmatched_requests_share_one_label(self) -> None:
        assert route_template({"type": "http", "path": "/nope/123"}) == "<unmatched>"
