"""SSRF-safe egress for webhooks: resolve once, refuse non-global targets, connect to the checked address.

Only global unicast addresses are permitted, unless inside `SMITS_WEBHOOK_ALLOW_CIDRS`. IPv6 forms that
embed an IPv4 address (IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96` (deprecated), IPv4-translated
`::ffff:0:0:0/96`, NAT64 `64:ff9b::/96` and `64:ff9b:1::/48`, 6to4 `2002::/16`) are judged by the embedded
address; `fec0::/10` (site-local), `3fff::/20`, `5f00::/16` and `192.88.99.0/24` are refused on every Python version.
`WebhookClient` (aiohttp, the webhook and chat POSTs' client) keeps that rule on every connection: its
`PinnedResolver` resolves the host once, checks every address and hands the connector only the checked ones, so a
DNS answer cannot change between the check and the connect (no rebinding); the Host header and TLS SNI still carry
the hostname because only the TCP connect target is replaced. aiohttp connects to an IP-literal host without asking
its resolver, so the client checks such a host itself before each request (`check_target`). No proxies from the
environment, no redirects followed, no cookies kept, TLS verified against the system CA store.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

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
    """The address `host` names literally (`10.0.0.1`, `[::1]`, `::1`); None for a hostname."""
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


def check_target(url: URL, allow: Sequence[Network]) -> None:
    """The check before each request: http(s), and a host aiohttp will connect to without asking the resolver
    (anything with a `:` or only digits and dots, its test for an IP address) must be a permitted address."""
    if url.scheme not in ("http", "https") or not url.raw_host:
        raise EgressRefused("URL must be http(s) with a host")
    host = url.raw_host
    if ":" not in host and not host.replace(".", "").isdigit():
        return  # a hostname: the resolver checks what it resolves to
    literal = ip_literal(host)
    if literal is None:
        raise EgressRefused(f"{host!r} is not an IP address")
    if not is_permitted(literal, allow):
        raise EgressRefused(f"{host!r} is a non-global address")


class PinnedResolver(AbstractResolver):
    """aiohttp's resolver for webhook targets: only checked addresses reach the connector."""

    def __init__(self, allow: Sequence[Network], resolver: Resolver = system_resolver) -> None:
        self._allow = tuple(allow)
        self._resolver = resolver

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        addresses = await checked_addresses(host, port, self._allow, self._resolver)
        results: list[ResolveResult] = []
        for address in addresses:
            found = socket.AF_INET6 if ":" in address else socket.AF_INET
            if family in (socket.AF_UNSPEC, found):
                flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
                results.append(
                    {"hostname": host, "host": address, "port": port, "family": found, "proto": 0, "flags": flags}
                )
        if not results:
            raise EgressRefused(f"{host!r} has no permitted address of the family asked for")
        return results

    async def close(self) -> None:
        pass


KEEPALIVE_S = 5.0
"""How long an idle connection to a receiver is kept for the next POST (below most servers' idle timeout)."""


class WebhookClient:
    """One pooled aiohttp session for webhook and chat POSTs, connecting only to checked addresses.

    `post` checks the target, then POSTs without following redirects; reading the answer (boundedly) and the
    deadline are the caller's (`sending.post`). The session is made on first use, inside the running loop
    aiohttp binds it to; `aclose` closes it.
    """

    def __init__(self, allow: Sequence[Network], resolver: Resolver = system_resolver, *, connections: int = 100):
        self._allow = tuple(allow)
        self._resolver = PinnedResolver(self._allow, resolver)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    def post(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        target = URL(url)
        check_target(target, self._allow)
        return self._open().post(target, data=body, headers=headers, allow_redirects=False)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=self._resolver,
                ttl_dns_cache=10,  # what a new connection finds cached was checked when it was resolved
                ssl=ssl.create_default_context(),  # verification on, the system CA store
                limit=self._connections,
                keepalive_timeout=KEEPALIVE_S,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,  # no proxies (nor .netrc) from the environment
                auto_decompress=False,  # bodies are read raw: no gzip bomb
                cookie_jar=aiohttp.DummyCookieJar(),  # a receiver's cookies go nowhere
                timeout=aiohttp.ClientTimeout(total=None),  # the caller's one deadline bounds everything
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> WebhookClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
