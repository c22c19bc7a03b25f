"""Both webhook clients (aiohttp's `webhook_session`, the delivery worker's, and httpx's `webhook_client`) resolve
once, refuse non-global answers and IP literals, and connect to the address they checked."""

from __future__ import annotations

import ipaddress

import pytest

from services.notifier.egress import EgressRefused, check_url, webhook_client, webhook_session
from services.notifier.sending import Request, post
from tests.support.receiver import Receiver

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


class FakeDns:
    """Stands in for DNS: always answers `answer`, and remembers what it was asked."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        return [self.answer]


PRIVATE = [
    "10.0.0.1",
    "169.254.169.254",
    "::1",
    "64:ff9b::a9fe:a9fe",
    "fe80::1",
    "::127.0.0.1",
    "::ffff:0:10.0.0.1",
    "fec0::1",
]


@pytest.mark.parametrize("answer", PRIVATE)
async def test_a_hostname_resolving_to_a_private_address_is_refused(answer: str) -> None:
    with pytest.raises(EgressRefused):
        await check_url("https://hooks.customer.example/x", [], FakeDns(answer))
    async with webhook_client([], FakeDns(answer)) as client:
        with pytest.raises(EgressRefused):
            await client.post("https://hooks.customer.example/x", content=b"{}")
    async with webhook_session([], FakeDns(answer)) as session:
        with pytest.raises(EgressRefused):
            await session.post("https://hooks.customer.example/x", data=b"{}", allow_redirects=False)


@pytest.mark.parametrize("address", ["127.0.0.1", "[::1]", *(f"[{a}]" if ":" in a else a for a in PRIVATE)])
async def test_an_ip_literal_host_is_checked_before_each_request(address: str) -> None:
    """aiohttp connects to an IP literal without asking its resolver: the session checks it itself, and the DNS is
    never asked."""
    dns = FakeDns("203.0.113.7")
    with Receiver() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        async with webhook_session([], dns) as session:
            for _ in range(2):  # the second request could reuse a pooled connection: still refused
                outcome = await post(session, Request(f"http://{address}:{port}/hooks", b"{}", {}), deadline_s=5)
                assert outcome.status_code is None
                assert (outcome.error or "").startswith("EgressRefused"), outcome.error
    assert receiver.received == []
    assert dns.calls == []


async def test_an_allowed_ip_literal_is_reached() -> None:
    with Receiver() as receiver:
        async with webhook_session(LOOPBACK, FakeDns("10.0.0.1")) as session:
            outcome = await post(session, Request(receiver.url, b"{}", {}), deadline_s=5)
    assert outcome.status_code == 204
    assert len(receiver.received) == 1


async def test_the_session_connects_to_the_checked_address_with_the_hostname_kept() -> None:
    with Receiver() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        fake = FakeDns("127.0.0.1")
        async with webhook_session(LOOPBACK, fake) as session:
            request = Request(f"http://hooks.customer.example:{port}/hooks", b"{}", {})
            for _ in range(3):
                outcome = await post(session, request, deadline_s=5)
                assert outcome.status_code == 204
    assert fake.calls == ["hooks.customer.example"]  # resolved once
    assert [r.headers["host"] for r in receiver.received] == [f"hooks.customer.example:{port}"] * 3


async def test_the_connection_goes_to_the_checked_address_with_the_hostname_kept() -> None:
    with Receiver() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        fake = FakeDns("127.0.0.1")
        async with webhook_client(LOOPBACK, fake) as client:
            response = await client.post(f"http://hooks.customer.example:{port}/hooks", content=b"{}")
    assert response.status_code == 204
    assert fake.calls == ["hooks.customer.example"]  # resolved once
    assert receiver.received[0].headers["host"] == f"hooks.customer.example:{port}"


async def test_the_allowlist_does_not_open_other_private_ranges() -> None:
    with pytest.raises(EgressRefused):
        await check_url("http://internal.example/", LOOPBACK, FakeDns("10.1.2.3"))
