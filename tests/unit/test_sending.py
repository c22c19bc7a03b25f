"""`sending.post` turns anything that goes wrong in one POST into a recorded outcome; it never raises."""

from __future__ import annotations

import httpx
import pytest

from services.notifier.sending import Request, post


def _raising(exc: Exception) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    "exc",
    [RuntimeError("boom"), httpx.StreamClosed(), AssertionError("client invariant"), KeyError("header")],
    ids=["runtime", "stream-closed", "assertion", "key"],
)
async def test_an_unexpected_error_in_the_client_becomes_a_failed_attempt(exc: Exception) -> None:
    async with httpx.AsyncClient(transport=_raising(exc)) as client:
        outcome = await post(client, Request("https://hooks.example/x", b"{}", {}), deadline_s=5)
    assert outcome.status_code is None
    assert outcome.error is not None
    assert type(exc).__name__ in outcome.error


async def test_an_error_while_reading_the_answer_keeps_the_status_that_arrived() -> None:
    # A mock response is already read, so streaming its body raises httpx.StreamConsumed (a RuntimeError).
    transport = httpx.MockTransport(lambda request: httpx.Response(503, content=b"busy", headers={"retry-after": "7"}))
    async with httpx.AsyncClient(transport=transport) as client:
        outcome = await post(client, Request("https://hooks.example/x", b"{}", {}), deadline_s=5)
    assert (outcome.status_code, outcome.retry_after) == (503, "7")
    assert outcome.error is not None
    assert "StreamConsumed" in outcome.error
