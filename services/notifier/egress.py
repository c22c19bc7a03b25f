"""Egress policy for webhook targets: only global addresses, unless inside `SMITS_WEBHOOK_ALLOW_CIDRS`."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


class EgressRefused(Exception):
    """The target is not a permitted destination; the message says why (never includes secrets)."""


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address hidden inside an IPv4-mapped, NAT64 or 6to4 IPv6 address, if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or ip in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_permitted(ip: IPAddress, allow: Sequence[Network]) -> bool:
    if any(ip in network for network in allow):
        return True
    inner = embedded_ipv4(ip)
    if inner is not None:
        return is_permitted(inner, allow)
    return ip.is_global and not ip.is_multicast


async def resolve_checked(url: str, allow: Sequence[Network]) -> list[IPAddress]:
    """Resolve the URL's host once and refuse it unless every address is permitted."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EgressRefused("URL must be http(s) with a host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise EgressRefused(f"host {parts.hostname!r} does not resolve") from exc
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    refused = [str(ip) for ip in addresses if not is_permitted(ip, allow)]
    if refused or not addresses:
        raise EgressRefused(f"host {parts.hostname!r} resolves to non-global address(es) {', '.join(refused)}")
    return addresses
