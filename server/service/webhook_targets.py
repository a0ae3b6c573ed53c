"""Where webhooks may go: http(s) URLs whose every address is public, unless an allow-list says so.

A webhook URL is chosen by the client, so without this check the service could be made to post into
its own network (SSRF): loopback, private (RFC 1918, ULA), link-local (cloud metadata at
169.254.169.254), carrier-grade NAT, multicast and reserved ranges are refused unless they fall in
``S3_WEBHOOK_ALLOW_NETWORKS``. The URL's shape is checked at execute; its addresses are resolved and
checked again before every attempt (a name may change what it points at), and redirects are never
followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from server.errors import ValidationFailed

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_URL_CHARS = 2048


class TargetRefused(Exception):
    """The URL resolves to an address webhooks may not reach (or does not resolve)."""


def _public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class AddressPolicy:
    allowed: tuple[Network, ...] = ()

    @classmethod
    def from_cidrs(cls, cidrs: Sequence[str]) -> AddressPolicy:
        try:
            return cls(tuple(ipaddress.ip_network(c, strict=False) for c in cidrs))
        except ValueError as e:
            raise ValueError(f"S3_WEBHOOK_ALLOW_NETWORKS: {e}") from e

    def permits(self, address: Address) -> bool:
        return _public(address) or any(address in net for net in self.allowed)

    def check_url(self, url: str, *, field: str = "webhook_url") -> str:
        """The URL if it is an absolute http(s) URL with a host, no credentials, and (when the host is
        an IP literal) a permitted address; ``ValidationFailed`` naming ``field`` otherwise."""
        if not isinstance(url, str) or not url or len(url) > MAX_URL_CHARS or not url.isprintable():
            raise ValidationFailed(
                f"{field}: must be an http(s) URL of at most {MAX_URL_CHARS} characters", field=field
            )
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise ValidationFailed(f"{field}: is not a valid URL ({e})", field=field) from e
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValidationFailed(f"{field}: must be an absolute http or https URL", field=field)
        if parts.username or parts.password:
            raise ValidationFailed(f"{field}: must not carry credentials", field=field)
        del port
        literal = _literal(parts.hostname)
        if (literal is not None and not self.permits(literal)) or (
            literal is None
            and parts.hostname.lower() in ("localhost", "localhost.localdomain")
            and not any(ipaddress.ip_address("127.0.0.1") in n for n in self.allowed)
        ):
            raise ValidationFailed(
                f"{field}: private, loopback and link-local addresses cannot receive webhooks", field=field
            )
        return url

    async def resolve(self, url: str) -> None:
        """Raise ``TargetRefused`` unless every address the URL's host resolves to is permitted."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        literal = _literal(host)
        if literal is not None:
            addresses: list[Address] = [literal]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as e:
                raise TargetRefused(f"{host} does not resolve: {e}") from e
            addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
        refused = [str(a) for a in addresses if not self.permits(a)]
        if refused or not addresses:
            raise TargetRefused(f"{host} resolves to an address webhooks may not reach ({', '.join(refused)})")


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
