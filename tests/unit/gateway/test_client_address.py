"""Which address a request is limited by: the peer, or what a trusted proxy says the peer was."""

from __future__ import annotations

import pytest

from gateway_rest.client_address import TrustedProxies

PROXIES = TrustedProxies.parse(["10.0.0.0/8", "2001:db8:ffff::1"])


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("203.0.113.5", None, "203.0.113.5"),
        ("203.0.113.5", "192.0.2.1", "203.0.113.5"),  # untrusted peer: the header is ignored
        ("10.0.0.7", None, "10.0.0.7"),
        ("10.0.0.7", "192.0.2.1", "192.0.2.1"),
        ("10.0.0.7", "198.51.100.1, 192.0.2.1", "192.0.2.1"),  # left entries are the client's own words
        ("10.0.0.7", "192.0.2.1, 10.0.0.3, 10.0.0.2", "192.0.2.1"),  # a chain of trusted proxies
        ("10.0.0.7", "10.0.0.3", "10.0.0.3"),  # only proxies: the farthest one vouched for
        ("10.0.0.7", "192.0.2.1, garbage", "10.0.0.7"),  # a garbled hop: keep what a proxy vouched for
        ("10.0.0.7", "", "10.0.0.7"),
        ("2001:db8:ffff::1", "2001:db8:1:2::5", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::5", None, "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.5", None, "203.0.113.5"),
        ("testclient", "192.0.2.1", "testclient"),  # not an IP (an in-process client): its name
    ],
)
def test_client_of(peer: str, forwarded_for: str | None, client: str) -> None:
    assert PROXIES.client_of(peer, forwarded_for) == client


def test_no_trusted_proxies_means_the_peer_always() -> None:
    assert TrustedProxies().client_of("127.0.0.1", "192.0.2.1") == "127.0.0.1"


def test_a_bad_proxy_entry_is_refused() -> None:
    with pytest.raises(ValueError):
        TrustedProxies.parse(["10.0.0.0/8", "proxy.internal"])
