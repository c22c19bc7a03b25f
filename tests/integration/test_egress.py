"""The webhook client resolves once, refuses non-global answers, and connects to the address it checked."""

from __future__ import annotations

import ipaddress

import pytest

from services.notifier.egress import EgressRefused, check_url, webhook_client
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


def _port(receiver: Receiver) -> str:
    return receiver.url.split(":")[2].split("/")[0]


@pytest.mark.parametrize(
    "answer",
    [
        "10.0.0.1",
        "169.254.169.254",
        "::1",
        "64:ff9b::a9fe:a9fe",
        "fe80::1",
        "::127.0.0.1",
        "::ffff:0:10.0.0.1",
        "fec0::1",
    ],
)
async def test_a_hostname_resolving_to_a_private_address_is_refused(answer: str) -> None:
    with pytest.raises(EgressRefused):
        await check_url("https://hooks.customer.example/x", [], FakeDns(answer))
    async with webhook_client([], FakeDns(answer)) as client:
        with pytest.raises(EgressRefused):
            async with client.post("https://hooks.customer.example/x", b"{}", {}):
                pass


async def test_the_connection_goes_to_the_checked_address_with_the_hostname_kept() -> None:
    with Receiver() as receiver:
        port = _port(receiver)
        fake = FakeDns("127.0.0.1")
        url = f"http://hooks.customer.example:{port}/hooks"
        async with webhook_client(LOOPBACK, fake) as client, client.post(url, b"{}", {}) as response:
            assert response.status == 204
    assert fake.calls == ["hooks.customer.example"]  # resolved once
    assert receiver.received[0].headers["host"] == f"hooks.customer.example:{port}"


async def test_the_allowlist_does_not_open_other_private_ranges() -> None:
    with pytest.raises(EgressRefused):
        await check_url("http://internal.example/", LOOPBACK, FakeDns("10.1.2.3"))
