"""A hostile or broken receiver next to a healthy one (real loopback HTTP, real Postgres and Kafka): the
healthy subscriber gets each webhook once and on time, and every hostile attempt is recorded."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from services.core.settings import Settings
from services.notifier.delivery import RESPONSE_KEEP
from services.notifier.persistence import SubscriptionRow
from tests.support.events import publish, review_event, tuned
from tests.support.harness import Harness, smits
from tests.support.hostile import Answer, HostileReceiver
from tests.support.receiver import Receiver
from tests.support.verify import verify_both
from tests.support.waiting import eventually

TIMEOUT_S, LEASE_S = 2.0, 3.0


def _fast(settings: Settings) -> Settings:
    return tuned(settings, delivery_timeout_s=TIMEOUT_S, delivery_lease_s=LEASE_S)


async def _subscribe(app: Harness, url: str, **fields: Any) -> dict[str, Any]:
    response = await app.api.post("/v1/subscriptions", json={"url": url, **fields})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _deliveries(app: Harness, subscription: dict[str, Any]) -> list[dict[str, Any]]:
    response = await app.api.get("/v1/deliveries", params={"subscription_id": subscription["id"]})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()
    return items


async def _attempted(app: Harness, subscription: dict[str, Any], deliveries: int) -> list[dict[str, Any]]:
    """Wait until `deliveries` deliveries of the subscription each have at least one recorded attempt."""
    return await eventually(
        lambda: _deliveries(app, subscription),
        lambda items: sum(1 for d in items if d["attempts"]) >= deliveries,
        within=30,
        what=f"attempts recorded for {deliveries} deliveries",
    )


async def _received(receiver: Receiver, count: int, *, within: float) -> None:
    async def probe() -> int:
        return len(receiver.received)

    await eventually(probe, lambda n: n >= count, within=within, what=f"{count} webhooks to the healthy receiver")


async def _exactly_once(receiver: Receiver, secret: str, expected: list[str]) -> None:
    """After a lease has expired (a rolled-back recording would have resent by then): each id once."""
    await asyncio.sleep(LEASE_S + 1.0)
    assert sorted(receiver.ids()) == sorted(expected)
    for message in receiver.received:
        verify_both(secret, message)


async def test_a_receiver_answering_a_byte_at_a_time_delays_no_one_else(settings: Settings) -> None:
    fast = _fast(settings)
    events = [review_event(uuid.uuid4(), 1) for _ in range(12)]
    async with HostileReceiver(answer=Answer(byte_delay_s=0.3)) as slow:
        with Receiver() as healthy:
            async with smits(fast, ["notifier"]) as app:
                good = await _subscribe(app, healthy.url)
                bad = await _subscribe(app, slow.url)
                started = time.monotonic()
                await publish(fast, events)
                await _received(healthy, len(events), within=30)
                took = max(message.at for message in healthy.received) - started
                attempts = await _attempted(app, bad, 4)
                await _exactly_once(healthy, good["secret"], [f"msg_{e.id.hex}" for e in events])
    assert took < 4.0, f"the healthy receiver's last webhook came {took:.1f} s after publishing"
    assert slow.peak <= fast.delivery_subscription_concurrency  # its own slots, no more
    tried = [a for d in attempts for a in d["attempts"]]
    assert all(a["duration_ms"] < (TIMEOUT_S + 1) * 1000 for a in tried), tried
    assert all("within 2 s" in (a["error"] or "") for a in tried), tried


@pytest.mark.parametrize(
    ("value", "capped"),
    [
        (b"9" * 40, True),  # seconds beyond any timedelta
        ("²³".encode(), False),  # non-ASCII digits
        (b"\xb2", False),  # a latin-1 byte
        (b"-1", False),
        (b"Thu, 01 Jan 2125 00:00:00 GMT", True),  # an HTTP date a century away
    ],
)
async def test_any_retry_after_is_recorded_and_clamped(settings: Settings, value: bytes, capped: bool) -> None:
    fast = _fast(settings)
    event = review_event(uuid.uuid4(), 1)
    async with HostileReceiver(answer=Answer(status=b"429", headers=((b"retry-after", value),))) as limited:
        with Receiver() as healthy:
            async with smits(fast, ["notifier"]) as app:
                good = await _subscribe(app, healthy.url)
                bad = await _subscribe(app, limited.url)
                await publish(fast, [event])
                await _received(healthy, 1, within=30)
                [delivery] = await _attempted(app, bad, 1)
                await _exactly_once(healthy, good["secret"], [f"msg_{event.id.hex}"])
    first = delivery["attempts"][0]
    assert first["status_code"] == 429
    wait = datetime.fromisoformat(delivery["next_attempt_at"]) - datetime.fromisoformat(first["attempted_at"])
    cap = timedelta(seconds=fast.webhook_retry_after_max_s)
    if capped:
        assert cap - timedelta(seconds=5) <= wait <= cap + timedelta(seconds=1)
    else:
        assert wait < timedelta(seconds=5)  # ignored: the retry schedule decides


async def test_nul_and_invalid_utf8_in_a_response_are_stored_safely(settings: Settings) -> None:
    fast = _fast(settings)
    event = review_event(uuid.uuid4(), 1)
    async with HostileReceiver(answer=Answer(body=b"ok\x00\xff\xfe\xc0 end\x00")) as odd:
        with Receiver() as healthy:
            async with smits(fast, ["notifier"]) as app:
                good = await _subscribe(app, healthy.url)
                bad = await _subscribe(app, odd.url)
                await publish(fast, [event])
                await _received(healthy, 1, within=30)
                [delivery] = await _attempted(app, bad, 1)
                await _exactly_once(healthy, good["secret"], [f"msg_{event.id.hex}"])
    assert delivery["status"] == "delivered"
    assert len(odd.received) == 1  # recorded the first time, so never sent again
    stored = delivery["attempts"][0]["response"]
    assert stored.startswith("ok")
    assert stored.endswith(" end\ufffd")
    assert "\x00" not in stored


async def test_a_huge_response_is_not_read_whole(settings: Settings) -> None:
    fast = _fast(settings)
    event = review_event(uuid.uuid4(), 1)
    huge = 100 * 1024 * 1024
    async with HostileReceiver(answer=Answer(body=b"{", extra_zeros=huge)) as flood:
        with Receiver() as healthy:
            async with smits(fast, ["notifier"]) as app:
                good = await _subscribe(app, healthy.url)
                bad = await _subscribe(app, flood.url)
                await publish(fast, [event])
                await _received(healthy, 1, within=30)
                [delivery] = await _attempted(app, bad, 1)
                await _exactly_once(healthy, good["secret"], [f"msg_{event.id.hex}"])
    assert delivery["status"] == "delivered"
    assert len(delivery["attempts"][0]["response"]) == RESPONSE_KEEP
    # What the kernel buffers on both ends at most; reading it whole would have taken all 100 MiB.
    assert flood.sent_bytes < 32 * 1024 * 1024, flood.sent_bytes


async def test_a_tiny_rate_limit_defers_only_its_own_deliveries_even_once_deleted(settings: Settings) -> None:
    fast = _fast(settings)
    first = [review_event(uuid.uuid4(), 1) for _ in range(3)]
    second = [review_event(uuid.uuid4(), 1) for _ in range(3)]
    with Receiver() as paced, Receiver() as healthy:
        async with smits(fast, ["notifier"]) as app:
            good = await _subscribe(app, healthy.url)
            slow = await _subscribe(app, paced.url)
            async with app.runtime.uow.begin() as session:  # stored before the API bounded the rate
                await session.execute(
                    update(SubscriptionRow)
                    .where(SubscriptionRow.id == uuid.UUID(slow["id"]))
                    .values(rate_limit_per_s=1e-6)
                )
            await publish(fast, first)
            await _received(healthy, 3, within=30)
            deleted = await app.api.delete(f"/v1/subscriptions/{slow['id']}")
            started = time.monotonic()
            await publish(fast, second)
            await _received(healthy, 6, within=30)
            took = max(message.at for message in healthy.received) - started
            await _exactly_once(healthy, good["secret"], [f"msg_{e.id.hex}" for e in first + second])
    assert deleted.status_code == 204
    assert took < 4.0, f"the healthy receiver's webhooks came {took:.1f} s after publishing"
    assert len(paced.received) == 1  # one now; the next would have waited its turn (100 s at the floor)


@pytest.mark.parametrize("rate", [1e-9, 0.009, 0, -1, 1000.5, 1e308, True, "0.5"])
async def test_rate_limit_bounds_are_validated_at_the_api(settings: Settings, rate: object) -> None:
    with Receiver() as receiver:
        async with smits(settings, ["notifier"]) as app:
            created = await app.api.post("/v1/subscriptions", json={"url": receiver.url, "rate_limit_per_s": rate})
            ok = await _subscribe(app, receiver.url, rate_limit_per_s=0.01)
            patched = await app.api.patch(f"/v1/subscriptions/{ok['id']}", json={"rate_limit_per_s": rate})
            edge = await app.api.patch(f"/v1/subscriptions/{ok['id']}", json={"rate_limit_per_s": 1000})
    for response in (created, patched):
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert [error["field"] for error in response.json()["errors"]] == ["rate_limit_per_s"]
    assert edge.status_code == 200


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("url", "http://127.0.0.1:0/hooks"),
        ("scopes", ["bu"] * 101),
        ("event_types", ["review.*"] * 101),
        ("scope", ["bu"]),  # a misspelt filter must not leave the subscription unfiltered
    ],
    ids=["port-0", "101-scopes", "101-event-types", "misspelt-field"],
)
async def test_unusable_or_unbounded_subscription_settings_are_refused(
    settings: Settings, field: str, value: object
) -> None:
    with Receiver() as receiver:
        async with smits(settings, ["notifier"]) as app:
            created = await app.api.post("/v1/subscriptions", json={"url": receiver.url, field: value})
    assert created.status_code == 422, created.text
    assert [error["field"] for error in created.json()["errors"]] == [field]


async def test_a_misspelt_field_in_a_patch_is_refused_not_ignored(settings: Settings) -> None:
    with Receiver() as receiver:
        async with smits(settings, ["notifier"]) as app:
            created = await _subscribe(app, receiver.url)
            patched = await app.api.patch(f"/v1/subscriptions/{created['id']}", json={"rate_limit": 1})
    assert patched.status_code == 422, patched.text
    assert [error["field"] for error in patched.json()["errors"]] == ["rate_limit"]
