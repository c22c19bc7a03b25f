"""`sending.post` turns anything that goes wrong in one POST into a recorded outcome; it never raises."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from services.notifier.egress import Resolver, WebhookClient
from services.notifier.sending import RESPONSE_KEEP, Request, post

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


def _raising(exc: Exception) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        raise exc

    return resolve


@pytest.mark.parametrize(
    "exc",
    [RuntimeError("boom"), aiohttp.ClientPayloadError("closed"), AssertionError("client invariant"), KeyError("h")],
    ids=["runtime", "payload", "assertion", "key"],
)
async def test_an_unexpected_error_in_the_client_becomes_a_failed_attempt(exc: Exception) -> None:
    async with WebhookClient([], _raising(exc)) as client:
        outcome = await post(client, Request("https://hooks.example/x", b"{}", {}), deadline_s=5)
    assert outcome.status_code is None
    assert outcome.error is not None
    assert type(exc).__name__ in outcome.error


@asynccontextmanager
async def _answering(raw: bytes, *, then_wait: bool = False) -> AsyncIterator[str]:
    """A loopback server that reads the request head, writes `raw`, then hangs up (or keeps the line open)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(raw)
        await writer.drain()
        if then_wait:
            await reader.read()  # until the client hangs up
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hooks"
    finally:
        server.close()
        await server.wait_closed()


async def test_an_error_while_reading_the_answer_keeps_the_status_that_arrived() -> None:
    # The body is cut short: content-length promises 100 bytes, 4 arrive, then the connection closes.
    head = b"HTTP/1.1 503 Busy\r\nretry-after: 7\r\ncontent-length: 100\r\n\r\nbusy"
    async with _answering(head) as url, WebhookClient(LOOPBACK) as client:
        outcome = await post(client, Request(url, b"{}", {}), deadline_s=5)
    assert (outcome.status_code, outcome.retry_after) == (503, "7")
    assert outcome.error is not None
    assert "ClientPayloadError" in outcome.error
    assert outcome.response == "busy"


async def test_a_deadline_while_reading_the_answer_keeps_the_status_and_what_arrived() -> None:
    # The head and 4 bytes arrive at once, the other 96 never do: the deadline (long enough for the head to arrive
    # on a loaded machine) ends the read.
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nslow"
    async with _answering(head, then_wait=True) as url, WebhookClient(LOOPBACK) as client:
        outcome = await post(client, Request(url, b"{}", {}), deadline_s=2)
    assert (outcome.status_code, outcome.response) == (200, "slow")
    assert outcome.error == "no complete answer within 2 s"


async def test_only_the_kept_part_of_a_long_answer_is_read() -> None:
    body = b"x" * (RESPONSE_KEEP * 3)
    head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (len(body) + 10**9)  # a gigabyte promised
    async with _answering(head + body, then_wait=True) as url, WebhookClient(LOOPBACK) as client:
        outcome = await post(client, Request(url, b"{}", {}), deadline_s=5)
    assert outcome.status_code == 200
    assert outcome.response == "x" * RESPONSE_KEEP
    assert outcome.error is None  # done once the kept part is in, without waiting for the rest
