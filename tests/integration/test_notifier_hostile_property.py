"""Property: whatever a receiver does (status line, headers including Retry-After, body bytes and size, a
pause before every byte), the subscriber next to it gets each webhook exactly once, in per-review order and
promptly, and every attempt on the hostile one is recorded. The delivery worker runs as `smits serve`
composes it, on real Postgres, against real loopback HTTP receivers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.core.db import UnitOfWork, create_engine
from services.core.kafka import Message
from services.core.settings import Settings
from services.notifier.delivery import DeliveryWorker
from services.notifier.egress import WebhookClient
from services.notifier.flows import plan_deliveries
from services.notifier.persistence import AttemptRow, DeliveryRow, SubscriptionRow
from services.notifier.retries import DeliveryStatus
from tests.support.events import review_event, tuned
from tests.support.hostile import Answer, HostileReceiver
from tests.support.receiver import Receiver
from tests.support.subscriptions import subscribe_directly
from tests.support.verify import verify_both
from tests.support.waiting import eventually

TIMEOUT_S, LEASE_S = 0.5, 1.0
ON_TIME_S = 2.0
"""Longest a healthy webhook may take from the worker's start (it takes milliseconds when unaffected)."""

_token = st.binary(min_size=1, max_size=12).map(lambda b: b.hex().encode())
_value = st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_retry_after = st.one_of(
    st.integers(-(10**30), 10**60).map(lambda n: str(n).encode()),
    st.sampled_from([b"Thu, 01 Jan 2125 00:00:00 GMT", "²³".encode(), b"\xb2", b"1e9", b"", b"\x00"]),
    _value,
)
answers = st.builds(
    Answer,
    status=st.one_of(st.integers(100, 999).map(lambda n: str(n).encode()), st.sampled_from([b"2000", b"abc", b""])),
    headers=st.lists(st.tuples(st.just(b"retry-after"), _retry_after) | st.tuples(_token, _value), max_size=4).map(
        tuple
    ),
    body=st.binary(max_size=3000),
    byte_delay_s=st.sampled_from([0.0, 0.0, 0.02]),
    extra_zeros=st.sampled_from([0, 0, 300_000, 5_000_000]),
)


_enabled = select(SubscriptionRow.description, SubscriptionRow.id).where(SubscriptionRow.enabled)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


def _messages(review_ids: list[uuid.UUID]) -> tuple[list[Message], list[str]]:
    """One event for each review, and a second for the first review (its order is checked)."""
    events = [review_event(review, 1) for review in review_ids] + [review_event(review_ids[0], 2)]
    messages = [
        Message(
            topic="reviews.events",
            partition=0,
            offset=n,
            key=str(e.review_id).encode(),
            value=orjson.dumps(e.model_dump(mode="json")),
            headers=(),
            timestamp_ms=0,
        )
        for n, e in enumerate(events)
    ]
    return messages, [f"msg_{e.id.hex}" for e in events]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answer=answers)
@example(answer=Answer(status=b"200", body=b"nul\x00here\xff"))
@example(answer=Answer(status=b"429", headers=((b"retry-after", b"9" * 40),)))
@example(answer=Answer(status=b"503", headers=((b"retry-after", "²".encode()),)))
@example(answer=Answer(status=b"200", byte_delay_s=0.05))
async def test_a_hostile_receiver_never_affects_its_neighbour(
    engine: AsyncEngine, settings: Settings, answer: Answer
) -> None:
    uow = UnitOfWork(engine)
    fast = tuned(settings, delivery_timeout_s=TIMEOUT_S, delivery_lease_s=LEASE_S)
    messages, ids = _messages([uuid.uuid4() for _ in range(3)])
    async with HostileReceiver(answer=answer) as hostile:
        with Receiver() as healthy:
            secret = await subscribe_directly(uow, healthy.url, description="healthy")
            await subscribe_directly(uow, hostile.url, description="hostile")
            async with uow.begin() as session:
                await plan_deliveries(session, messages, now=datetime.now(UTC))
                subscriptions = {name: sid for name, sid in (await session.execute(_enabled)).all()}
            worker = DeliveryWorker(uow=uow, settings=fast, client=WebhookClient(fast.allow_networks))
            stop = asyncio.Event()
            started = time.monotonic()
            task = asyncio.create_task(worker.run(stop))
            try:
                await eventually(
                    lambda: _count(healthy), lambda n: n >= len(ids), within=ON_TIME_S * 3, what="healthy webhooks"
                )
                await asyncio.sleep(LEASE_S + 0.3)  # a lost recording would resend at lease expiry
            finally:
                stop.set()
                await asyncio.wait_for(task, timeout=10)
            state = await _state(uow, subscriptions["healthy"], subscriptions["hostile"])
            await _forget(uow)
    got = healthy.ids()
    assert sorted(got) == sorted(ids)  # each exactly once
    assert got.index(ids[0]) < got.index(ids[-1])  # the first review's two events in order
    assert max(message.at for message in healthy.received) - started < ON_TIME_S
    for message in healthy.received:
        verify_both(secret, message)
    assert state["healthy_statuses"] == [DeliveryStatus.DELIVERED] * len(ids)
    assert state["healthy_attempts"] == len(ids)
    assert state["hostile_attempts"] >= len(hostile.received)  # every request it saw is recorded
    assert state["hostile_attempts"] == state["hostile_attempt_count"]
    assert state["hostile_leased"] == 0  # nothing left in flight, unrecorded


async def _count(receiver: Receiver) -> int:
    return len(receiver.received)


async def _state(uow: UnitOfWork, healthy: uuid.UUID, hostile: uuid.UUID) -> dict[str, Any]:
    async with uow.begin() as session:
        rows = (
            await session.execute(
                select(DeliveryRow.id, DeliveryRow.subscription_id, DeliveryRow.status, DeliveryRow.attempt_count)
                .where(DeliveryRow.subscription_id.in_([healthy, hostile]))
                .order_by(DeliveryRow.sequence)
            )
        ).all()
        attempts = (
            (
                await session.execute(
                    select(AttemptRow.delivery_id).where(AttemptRow.delivery_id.in_([r.id for r in rows]))
                )
            )
            .scalars()
            .all()
        )
        leased = await session.scalar(
            select(DeliveryRow.id)
            .where(DeliveryRow.subscription_id == hostile, DeliveryRow.locked_until > datetime.now(UTC))
            .limit(1)
        )
    owner = {row.id: row.subscription_id for row in rows}
    return {
        "healthy_statuses": [row.status for row in rows if row.subscription_id == healthy],
        "healthy_attempts": sum(1 for d in attempts if owner[d] == healthy),
        "hostile_attempts": sum(1 for d in attempts if owner[d] == hostile),
        "hostile_attempt_count": sum(row.attempt_count for row in rows if row.subscription_id == hostile),
        "hostile_leased": 0 if leased is None else 1,
    }


async def _forget(uow: UnitOfWork) -> None:
    """The next example plans for its own subscriptions only."""
    async with uow.begin() as session:
        await session.execute(update(SubscriptionRow).values(enabled=False))
