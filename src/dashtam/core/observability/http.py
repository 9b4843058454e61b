"""HTTP route labels for the metrics (recorded by `core.middleware.EdgeMiddleware`) and the
access rule of `GET /metrics`."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.types import Scope

from dashtam.core.config import Settings
from dashtam.core.net import IPNetwork, parse_ip

#: The route label of requests no route matched (404s for unknown paths): one series for all.
UNMATCHED = "<unmatched>"


def route_template(scope: Scope) -> str:
    """The matched route's full template (`/api/v1/accounts/{account_id}`), never the raw path.

    Recent FastAPI versions keep included routers as routers: `scope["route"].path` is then relative
    to its router (`/accounts/{account_id}`), and the full template is on the effective route
    context FastAPI records in the scope. The relative one is the fallback.
    """
    fastapi_scope = scope.get("fastapi")
    if isinstance(fastapi_scope, dict):
        effective = getattr(fastapi_scope.get("effective_route_context"), "path", None)
        if isinstance(effective, str) and effective:
            return effective
    path = getattr(scope.get("route"), "path", None)
    return str(path) if path else UNMATCHED


@dataclass(frozen=True)
class MetricsAccess:
    """Who may read `/metrics`: callers from allowed networks and/or with the bearer token.

    * Token unset: the caller's address must be in `networks` (an empty list admits nobody).
    * Token set: the `Authorization: Bearer` value must match, and the caller's address must be
      in `networks` unless the list is empty (token only).

    Attributes:
        networks: Allowed client networks (`METRICS_ALLOWED_IPS`).
        token: The expected bearer token (`METRICS_BEARER_TOKEN`), or None.
    """

    networks: tuple[IPNetwork, ...]
    token: bytes | None

    @classmethod
    def from_settings(cls, settings: Settings) -> MetricsAccess:
        """Parse the settings once (the route runs on every scrape)."""
        secret = settings.metrics_bearer_token
        token = secret.get_secret_value().encode() if secret is not None else None
        return cls(parse_networks(settings.metrics_allowed_ips), token or None)

    def allows(self, client: str, authorization: str | None) -> bool:
        """Whether a caller at `client` presenting `authorization` may read the metrics."""
        address_ok = self._address_allowed(client)
        if self.token is None:
            return address_ok
        if self.networks and not address_ok:
            return False
        return self._token_matches(authorization)

    def _address_allowed(self, client: str) -> bool:
        address = parse_ip(client)
        if address is None:
            return False
        return any(address.version == net.version and address in net for net in self.networks)

    def _token_matches(self, authorization: str | None) -> bool:
        assert self.token is not None
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            # Still compare, so a missing header costs the same as a wrong one.
            hmac.compare_digest(self.token, self.token)
            return False
        return hmac.compare_digest(presented.strip().encode(), self.token)


def parse_networks(entries: Sequence[str]) -> tuple[IPNetwork, ...]:
    """IPs and CIDRs (`127.0.0.1`, `10.0.0.0/8`, `::1`) as networks; raises on garbage."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry)
