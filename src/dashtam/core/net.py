"""Who is the client? The peer address, or `X-Forwarded-For` when a trusted proxy says so.

`X-Forwarded-For` is written by the client as much as by proxies, so only the part appended by
our own proxies can be believed: we walk it from the right and stop at the first address that
is not one of them. Anything a client prepends is ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

UNKNOWN_CLIENT = "unknown"


@lru_cache(maxsize=32)
def _networks(trusted: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    # Parsed once per distinct setting value: client_ip runs on every request.
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in trusted if entry)


def parse_ip(value: str) -> IPAddress | None:
    """Parse one address as found in headers (`1.2.3.4`, `1.2.3.4:5678`, `[::1]:80`, `::1`).

    IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) come back as IPv4 so one client has one key.

    Returns:
        The address, or None when the text is not an IP address (e.g. `unknown`).
    """
    text = value.strip()
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        # Only IPv4 with a port has exactly one colon; bare IPv6 has at least two.
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def client_ip(peer_host: str | None, forwarded_for: str | None, trusted_proxies: list[str]) -> str:
    """Return the address to attribute a request to (for rate limits, audit and sessions).

    Args:
        peer_host: The address of the direct TCP peer (`request.client.host`).
        forwarded_for: The `X-Forwarded-For` header; several headers joined with commas.
        trusted_proxies: Our own proxies, as IPs or CIDRs (setting `TRUSTED_PROXIES`).

    Returns:
        The peer itself unless it is a trusted proxy; otherwise the right-most forwarded address
        that is not a trusted proxy (or the left-most one when every hop is trusted). Falls back
        to the peer when the chain holds something that is not an address where we need one.
    """
    if not peer_host:
        return UNKNOWN_CLIENT
    peer = parse_ip(peer_host)
    if peer is None:
        # Not an IP (a unix socket, a test client name): nothing to trust, use it verbatim.
        return peer_host
    networks = _networks(tuple(trusted_proxies))
    if not forwarded_for or not networks or not _is_trusted(peer, networks):
        return str(peer)
    hops = [hop for hop in (part.strip() for part in forwarded_for.split(",")) if hop]
    candidate = peer
    for hop in reversed(hops):
        address = parse_ip(hop)
        if address is None:
            # Our proxy always appends a real address, so garbage here came from the client
            # (or a misconfiguration): do not let it choose its own identity.
            return str(candidate)
        candidate = address
        if not _is_trusted(address, networks):
            return str(address)
    return str(candidate)
