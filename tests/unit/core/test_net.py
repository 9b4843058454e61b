"""Client address resolution behind trusted proxies."""

from __future__ import annotations

import pytest

from dashtam.core.net import client_ip, parse_ip
from dashtam.core.ratelimit import client_ip as reexported

PROXIES = ["10.0.0.0/8", "192.0.2.1"]


class TestClientIp:
    def test_reexported_from_ratelimit(self) -> None:
        assert reexported is client_ip

    def test_without_trusted_proxies_the_header_is_ignored(self) -> None:
        assert client_ip("203.0.113.5", "198.51.100.7", []) == "203.0.113.5"

    def test_untrusted_peer_cannot_claim_another_address(self) -> None:
        assert client_ip("203.0.113.5", "198.51.100.7", PROXIES) == "203.0.113.5"

    def test_trusted_peer_gives_the_forwarded_address(self) -> None:
        assert client_ip("10.1.2.3", "198.51.100.7", PROXIES) == "198.51.100.7"

    def test_right_most_untrusted_hop_wins_over_spoofed_ones(self) -> None:
        header = "1.1.1.1, 198.51.100.7, 10.9.9.9, 192.0.2.1"
        assert client_ip("10.1.2.3", header, PROXIES) == "198.51.100.7"

    def test_when_every_hop_is_trusted_the_left_most_is_used(self) -> None:
        assert client_ip("10.1.2.3", "10.5.5.5, 192.0.2.1", PROXIES) == "10.5.5.5"

    def test_garbage_in_the_chain_stops_the_walk(self) -> None:
        assert client_ip("10.1.2.3", "198.51.100.7, not-an-ip, 10.9.9.9", PROXIES) == "10.9.9.9"
        assert client_ip("10.1.2.3", "unknown", PROXIES) == "10.1.2.3"

    def test_missing_or_empty_header_gives_the_peer(self) -> None:
        assert client_ip("10.1.2.3", None, PROXIES) == "10.1.2.3"
        assert client_ip("10.1.2.3", " , ", PROXIES) == "10.1.2.3"

    def test_missing_peer_is_unknown(self) -> None:
        assert client_ip(None, "198.51.100.7", PROXIES) == "unknown"

    def test_ipv6_proxies_and_clients(self) -> None:
        assert client_ip("fd00::1", "2001:db8::5", ["fd00::/8"]) == "2001:db8::5"

    def test_ports_and_brackets_are_stripped(self) -> None:
        assert client_ip("10.1.2.3", "198.51.100.7:4711", PROXIES) == "198.51.100.7"
        assert client_ip("10.1.2.3", "[2001:db8::5]:443", PROXIES) == "2001:db8::5"

    def test_ipv4_mapped_ipv6_is_one_client(self) -> None:
        assert client_ip("::ffff:203.0.113.5", None, []) == "203.0.113.5"
        assert client_ip("::ffff:10.1.2.3", "198.51.100.7", PROXIES) == "198.51.100.7"

    def test_non_ip_peer_is_used_verbatim(self) -> None:
        assert client_ip("testclient", "198.51.100.7", PROXIES) == "testclient"


class TestParseIp:
    @pytest.mark.parametrize("text", ["", "unknown", "999.1.1.1", "[::1", "1.2.3.4:x:y"])
    def test_non_addresses_are_none(self, text: str) -> None:
        assert parse_ip(text) is None
