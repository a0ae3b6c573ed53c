"""Who is asking: the client address a request is rate-limited by.

The socket peer is the client, unless the peer is one of the operator's trusted reverse proxies: then
``X-Forwarded-For`` is read from the right (each proxy appends the peer it saw), skipping trusted
proxies, and the first address that is not one is the client. Entries left of it were written by the
client itself and are never believed. A header from an untrusted peer is ignored entirely, so a
client cannot pick its own bucket by sending one.

uvicorn's own ``proxy_headers`` rewriting is turned off where the app is served (``stack.runtime``):
this module is the one place that decides.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

FORWARDED_FOR_HEADER = "x-forwarded-for"

# One IPv6 subscriber is routinely given a whole /64: limiting single addresses inside it would give
# one client 2**64 buckets.
IPV6_BUCKET_PREFIX = 64


def _address(text: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


@dataclass(frozen=True)
class TrustedProxies:
    networks: tuple[IpNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> TrustedProxies:
        """Addresses or networks (``10.0.0.0/8``); :class:`ValueError` for anything else."""
        return cls(tuple(ipaddress.ip_network(e.strip(), strict=False) for e in entries))

    def trusts(self, address: IpAddress | None) -> bool:
        return address is not None and any(address in network for network in self.networks)

    def client_of(self, peer: str, forwarded_for: str | None) -> str:
        """The bucket key of the client behind ``peer`` (see the module doc)."""
        peer_address = _address(peer)
        client = peer_address
        if forwarded_for and self.trusts(peer_address):
            for entry in reversed(forwarded_for.split(",")):
                hop = _address(entry)
                if hop is None:
                    break  # a garbled entry: keep the last address a trusted proxy vouched for
                client = hop
                if not self.trusts(hop):
                    break
        if client is None:
            return peer  # not an IP (a unix socket, an in-process test client): the peer name itself
        return bucket_key(client)


def bucket_key(address: IpAddress) -> str:
    """IPv4 addresses as they are; IPv6 by their /64 (an IPv4-mapped IPv6 address is its IPv4)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_BUCKET_PREFIX), strict=False))
    return str(address)
