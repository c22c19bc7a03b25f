"""The webhook client's two doors to an address, over every address class: the check of an IP-literal host before
each request (aiohttp connects to one without asking a resolver) and the resolver, which hands the connector
exactly the addresses it checked. Both judge an address as `is_permitted` does."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from services.notifier.egress import EgressRefused, IPAddress, PinnedResolver, check_target, is_permitted

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


def _embeddings(v4: IPAddress) -> list[IPAddress]:
    assert v4.version == 4
    low = int(v4)
    return [
        v4,
        ipaddress.IPv6Address(low),  # ::a.b.c.d, IPv4-compatible
        ipaddress.IPv6Address((0xFFFF << 32) | low),  # ::ffff:a.b.c.d, IPv4-mapped
        ipaddress.IPv6Address((0xFFFF << 48) | low),  # ::ffff:0:a.b.c.d, IPv4-translated
        ipaddress.IPv6Address((0x0064FF9B << 96) | low),  # 64:ff9b::a.b.c.d, NAT64
        ipaddress.IPv6Address((0x2002 << 112) | (low << 80)),  # 2002:a.b.c.d::, 6to4
    ]


# Hypothesis draws special-purpose ranges (private, loopback, link-local, ...) often; plus every embedded form.
addresses = st.ip_addresses() | st.ip_addresses(v=4).flatmap(lambda v4: st.sampled_from(_embeddings(v4)))
allowlists = st.sampled_from([[], LOOPBACK])


def _url_hosts(address: IPAddress) -> list[str]:
    """The ways a URL may write the address: dotted, or bracketed IPv6 compressed, exploded and dotted-tail."""
    if isinstance(address, ipaddress.IPv4Address):
        return [str(address)]
    forms = [address.compressed, address.exploded]
    tail = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    forms.append(":".join(address.exploded.split(":")[:6]) + f":{tail}")
    return [f"[{form}]" for form in forms]


@given(address=addresses, allow=allowlists)
def test_an_ip_literal_host_is_judged_as_its_address(address: IPAddress, allow: list[ipaddress.IPv4Network]) -> None:
    for host in _url_hosts(address):
        for scheme in ("http", "https"):
            url = URL(f"{scheme}://{host}:8443/hooks")
            if is_permitted(address, allow):
                check_target(url, allow)
            else:
                with pytest.raises(EgressRefused):
                    check_target(url, allow)


@pytest.mark.parametrize(
    "host", ["127.1", "2130706433", "0177.0.0.1", "127.0.0.1.", "127.000.000.001", "[::1%25lo]", "[::1%lo]"]
)
def test_a_host_that_looks_numeric_but_is_no_canonical_address_is_refused(host: str) -> None:
    """aiohttp treats any host with a `:` or only digits and dots as an address and skips the resolver for it:
    3.12.15 connected the numeric forms (2130706433, 127.1, 0177.0.0.1) to the address they spell (3.14.5 refuses)."""
    with pytest.raises(EgressRefused):
        check_target(URL(f"http://{host}/hooks"), LOOPBACK)


def test_a_hostname_is_left_to_the_resolver() -> None:
    check_target(URL("https://hooks.customer.example/x"), [])
    check_target(URL("https://10.0.0.1.nip.io/x"), [])
    check_target(URL("http://0x7f.0.0.1/x"), [])  # a name to aiohttp: what getaddrinfo makes of it is checked


@given(answer=st.lists(addresses, min_size=1, max_size=3), allow=allowlists)
async def test_the_resolver_hands_on_exactly_the_checked_addresses(
    answer: list[IPAddress], allow: list[ipaddress.IPv4Network]
) -> None:
    asked: list[tuple[str, int]] = []

    async def dns(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return [str(address) for address in answer]

    resolver = PinnedResolver(allow, dns)
    if all(is_permitted(address, allow) for address in answer):
        results = await resolver.resolve("hooks.customer.example", 443)
        assert [result["host"] for result in results] == [str(address) for address in answer]
        assert {result["hostname"] for result in results} == {"hooks.customer.example"}
        assert {result["port"] for result in results} == {443}
        for result, address in zip(results, answer, strict=True):
            assert result["family"] == (socket.AF_INET6 if address.version == 6 else socket.AF_INET)
            assert result["flags"] & socket.AI_NUMERICHOST
    else:
        with pytest.raises(EgressRefused):
            await resolver.resolve("hooks.customer.example", 443)
    assert asked == [("hooks.customer.example", 443)]


async def test_the_resolver_keeps_only_the_family_asked_for() -> None:
    async def dns(host: str, port: int) -> list[str]:
        return ["127.0.0.1", "::ffff:127.0.0.2"]

    resolver = PinnedResolver(LOOPBACK, dns)
    assert [r["host"] for r in await resolver.resolve("h.example", 80, socket.AF_INET)] == ["127.0.0.1"]
    assert [r["host"] for r in await resolver.resolve("h.example", 80, socket.AF_INET6)] == ["::ffff:127.0.0.2"]

    async def only_v4(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    with pytest.raises(EgressRefused):
        await PinnedResolver(LOOPBACK, only_v4).resolve("h.example", 80, socket.AF_INET6)
