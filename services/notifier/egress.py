"""SSRF-safe egress for webhooks: resolve once, refuse non-global targets, connect to the checked address.

Only global unicast addresses are permitted, unless inside `SMITS_WEBHOOK_ALLOW_CIDRS`. IPv6 forms that
embed an IPv4 address (IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96` (deprecated), IPv4-translated
`::ffff:0:0:0/96`, NAT64 `64:ff9b::/96` and `64:ff9b:1::/48`, 6to4 `2002::/16`) are judged by the embedded
address; `fec0::/10` (site-local), `3fff::/20`, `5f00::/16` and `192.88.99.0/24` are refused on every Python version.
Two clients keep that rule. The webhook worker's, `webhook_session` (aiohttp, the leaner one on the hot path):
its `PinnedResolver` resolves the host, checks every address and hands the connector only the checked ones, and
since aiohttp connects to an IP-literal host without asking its resolver, such a host is checked before each
request (`literal_check`). The httpx one, `webhook_client`: `PinnedBackend` resolves the host itself and hands
httpcore a connection to the address it checked. Either way a DNS answer cannot change between the check and
the connect (no rebinding); the Host header and TLS SNI still carry the hostname because only the TCP connect
target is replaced. Neither reads proxies from the environment; callers never follow redirects.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpcore
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""host, port → IP address strings (injectable so tests can stand in for DNS)."""

# IPv6 ranges whose low 32 bits are an IPv4 address that a translator or a dual stack may reach.
_EMBEDDING = (
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (RFC 4291 2.5.5.1, deprecated); `::` and `::1` fall here too
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # IPv4-translated (RFC 2765)
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64 well-known prefix (RFC 6052)
    ipaddress.IPv6Network("64:ff9b:1::/48"),  # NAT64 local-use prefix (RFC 8215)
)
# Not global, though some Python versions' `ipaddress` tables say they are: judged the same on every version.
_NOT_GLOBAL: tuple[Network, ...] = (
    ipaddress.IPv6Network("fec0::/10"),  # site-local, deprecated (RFC 3879) but still routed inside some sites
    ipaddress.IPv6Network("3fff::/20"),  # documentation (RFC 9637)
    ipaddress.IPv6Network("5f00::/16"),  # SRv6 segment identifiers (RFC 9602)
    ipaddress.IPv4Network("192.88.99.0/24"),  # 6to4 relay anycast, deprecated (RFC 7526)
)


class EgressRefused(Exception):
    """The target is not a permitted destination; the message says why (it never includes secrets)."""


async def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise EgressRefused(f"host {host!r} does not resolve") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, -compatible or -translated, NAT64 or 6to4 IPv6 address, if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in network for network in _EMBEDDING):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_permitted(ip: IPAddress, allow: Sequence[Network]) -> bool:
    """Inside the allowlist, or global unicast; an IPv6 form embedding an IPv4 address is judged by that address."""
    if any(ip in network for network in allow):
        return True
    inner = embedded_ipv4(ip)
    if inner is not None:
        return is_permitted(inner, allow)
    if any(ip.version == net.version and ip in net for net in _NOT_GLOBAL):
        return False
    return ip.is_global and not ip.is_multicast


def ip_literal(host: str) -> IPAddress | None:
    """The address `host` names literally (`10.0.0.1`, `[::1]`), None for a hostname."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def checked_addresses(host: str, port: int, allow: Sequence[Network], resolver: Resolver) -> list[str]:
    """Resolve `host` once; refuse it unless every address it resolves to is permitted."""
    host = host.strip("[]")
    literal = ip_literal(host)
    addresses = [str(literal)] if literal is not None else await resolver(host, port)
    refused = [a for a in addresses if not is_permitted(ipaddress.ip_address(a), allow)]
    if refused or not addresses:
        raise EgressRefused(f"{host!r} resolves to a non-global address ({', '.join(refused) or 'none'})")
    return addresses


async def check_url(url: str, allow: Sequence[Network], resolver: Resolver = system_resolver) -> None:
    """The subscription-time check: http(s), a host, and only permitted addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EgressRefused("URL must be http(s) with a host")
    if parts.username or parts.password:
        raise EgressRefused("URL must not carry credentials")
    await checked_addresses(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), allow, resolver)


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses it resolved and checked itself."""

    def __init__(self, allow: Sequence[Network], resolver: Resolver = system_resolver) -> None:
        self._allow = tuple(allow)
        self._resolver = resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await checked_addresses(host, port, self._allow, self._resolver)
        return await self._inner.connect_tcp(
            addresses[0], port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise EgressRefused("unix sockets are not webhook targets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx transport over `PinnedBackend`; no proxies from the environment, no redirects (callers)."""

    def __init__(self, allow: Sequence[Network], resolver: Resolver = system_resolver) -> None:
        super().__init__(trust_env=False)
        # httpx exposes no network-backend option; the pool is rebuilt with ours (same defaults otherwise).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=PinnedBackend(allow, resolver),
        )


def webhook_client(allow: Sequence[Network], resolver: Resolver = system_resolver) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=PinnedTransport(allow, resolver), follow_redirects=False, trust_env=False)


class PinnedResolver(AbstractResolver):
    """aiohttp's resolver for webhook hosts: refuses a host unless every address it resolves to is permitted, and
    gives the connector only the addresses it checked (numeric, so nothing resolves them again)."""

    def __init__(self, allow: Sequence[Network], resolver: Resolver = system_resolver) -> None:
        self._allow = tuple(allow)
        self._resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await checked_addresses(host, port, self._allow, self._resolver)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None


def literal_check(allow: Sequence[Network]) -> aiohttp.ClientMiddlewareType:
    """A middleware refusing a request to an IP-literal host that is not permitted (aiohttp connects to those
    without its resolver)."""
    permitted = tuple(allow)

    async def middleware(request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType) -> aiohttp.ClientResponse:
        host = request.url.raw_host or ""
        literal = ip_literal(host)
        if literal is None and (":" in host or host.replace(".", "").isdigit()):
            # aiohttp takes such hosts as addresses too (`2130706433`, `127.1`, `0177.0.0.1` on older versions)
            raise EgressRefused(f"{host!r} is not a canonical address")
        if literal is not None and not is_permitted(literal, permitted):
            raise EgressRefused(f"{str(literal)!r} is a non-global address")
        return await handler(request)

    return middleware


def webhook_session(allow: Sequence[Network], resolver: Resolver = system_resolver) -> aiohttp.ClientSession:
    """The webhook worker's client (create it in a running event loop): pinned, checked egress; no proxies from
    the environment, no cookies, answers not decompressed, and no timeout of its own (`sending.post` has the
    deadline). Requests must pass `allow_redirects=False`."""
    connector = aiohttp.TCPConnector(resolver=PinnedResolver(allow, resolver), limit=100, keepalive_timeout=5.0)
    return aiohttp.ClientSession(
        connector=connector,
        middlewares=(literal_check(allow),),
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None),
    )
