"""The notifier's planning flow called directly on a real Postgres database with constructed messages: matching,
per-review order (only the first pending delivery of a subscription and review is ready) and unreadable events."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
from sqlalchemy import select, update

from services.contracts.reviews import ReviewEventV1
from services.core.db import UnitOfWork
from services.core.kafka import Message
from services.notifier.flows import plan_deliveries
from services.notifier.persistence import DeliveryRow, SubscriptionRow
from services.notifier.retries import DeliveryStatus
from tests.support.events import review_event
from tests.support.subscriptions import subscribe_directly

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def messages(values: Sequence[bytes]) -> list[Message]:
    return [
        Message(topic="t.reviews.events", partition=0, offset=n, key=None, value=v, headers=(), timestamp_ms=0)
        for n, v in enumerate(values)
    ]


def encoded(events: Sequence[ReviewEventV1]) -> list[bytes]:
    return [orjson.dumps(event.model_dump(mode="json")) for event in events]


async def subscription_ids(uow: UnitOfWork) -> list[uuid.UUID]:
    async with uow.begin() as session:
        return list((await session.scalars(select(SubscriptionRow.id).order_by(SubscriptionRow.url))).all())


async def plan(uow: UnitOfWork, values: Sequence[bytes]) -> int:
    async with uow.begin() as session:
        return await plan_deliveries(session, messages(values), now=NOW)


async def deliveries(uow: UnitOfWork) -> list[DeliveryRow]:
    async with uow.begin() as session:
        return list((await session.scalars(select(DeliveryRow).order_by(DeliveryRow.sequence))).all())


async def test_only_the_first_pending_event_of_a_review_is_ready_per_subscription(uow: UnitOfWork) -> None:
    await subscribe_directly(uow, "http://127.0.0.1:1/a")
    await subscribe_directly(uow, "http://127.0.0.1:1/b")
    one, two = uuid.uuid4(), uuid.uuid4()
    planned = await plan(uow, encoded([review_event(one, 1), review_event(one, 2), review_event(two, 1)]))
    rows = await deliveries(uow)
    assert planned == 6
    ready = {(row.subscription_id, row.review_id, row.sequence): row.ready for row in rows}
    for subscription in await subscription_ids(uow):
        assert ready[(subscription, str(one), 1)] is True
        assert ready[(subscription, str(one), 2)] is False  # waits for its predecessor
        assert ready[(subscription, str(two), 1)] is True  # another review does not wait
    assert len({row.msg_id for row in rows}) == 3  # one webhook-id per event, shared by its subscribers


async def test_a_later_batch_waits_for_a_pending_predecessor_but_not_for_a_delivered_one(uow: UnitOfWork) -> None:
    await subscribe_directly(uow, "http://127.0.0.1:1/a")
    review = uuid.uuid4()
    await plan(uow, encoded([review_event(review, 1)]))
    await plan(uow, encoded([review_event(review, 2)]))
    async with uow.begin() as session:
        await session.execute(
            update(DeliveryRow).where(DeliveryRow.sequence == 1).values(status=DeliveryStatus.DELIVERED)
        )
    await plan(uow, encoded([review_event(review, 3)]))
    ready = {row.sequence: row.ready for row in await deliveries(uow)}
    assert ready == {1: True, 2: False, 3: False}  # 3 waits for 2, which is still pending


async def test_filters_disabled_and_deleted_subscriptions_decide_who_gets_a_delivery(uow: UnitOfWork) -> None:
    await subscribe_directly(uow, "http://127.0.0.1:1/a-all")
    await subscribe_directly(uow, "http://127.0.0.1:1/b-audit-only")
    await subscribe_directly(uow, "http://127.0.0.1:1/c-disabled")
    await subscribe_directly(uow, "http://127.0.0.1:1/d-deleted")
    everything, audit_only, disabled, deleted = await subscription_ids(uow)
    async with uow.begin() as session:
        await session.execute(
            update(SubscriptionRow).where(SubscriptionRow.id == audit_only).values(categories=["audit_finding"])
        )
        await session.execute(update(SubscriptionRow).where(SubscriptionRow.id == disabled).values(enabled=False))
        await session.execute(update(SubscriptionRow).where(SubscriptionRow.id == deleted).values(deleted_at=NOW))
    events = [review_event(uuid.uuid4(), 1, category="audit_finding"), review_event(uuid.uuid4(), 1)]
    await plan(uow, encoded(events))
    got = {(row.subscription_id, row.event_type, row.review_id) for row in await deliveries(uow)}
    audit_review, regulation_review = str(events[0].review_id), str(events[1].review_id)
    assert got == {
        (everything, "review.opened", audit_review),
        (everything, "review.opened", regulation_review),
        (audit_only, "review.opened", audit_review),
    }


async def test_an_unreadable_event_is_skipped_and_the_rest_of_its_batch_is_planned(uow: UnitOfWork) -> None:
    await subscribe_directly(uow, "http://127.0.0.1:1/a")
    good = review_event(uuid.uuid4(), 1)
    planned = await plan(uow, [b"not json", b'{"type": "review.opened"}', *encoded([good])])
    rows = await deliveries(uow)
    assert planned == 1
    assert [row.msg_id for row in rows] == [f"msg_{good.id.hex}"]
    assert orjson.loads(rows[0].body)["type"] == "review.opened"
