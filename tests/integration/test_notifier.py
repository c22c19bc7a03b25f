"""Notifier on the real broker and Postgres, delivering to real HTTP receivers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import standardwebhooks
import svix.webhooks
from sqlalchemy import select

from services.core.db import UnitOfWork, create_engine
from services.core.kafka import Message
from services.core.settings import Settings
from services.notifier.flows import plan_deliveries
from services.notifier.persistence import DeliveryRow, SubscriptionRow, pending_pairs, promote_next
from services.notifier.retries import DeliveryStatus
from tests.support.events import publish, review_event, tuned
from tests.support.harness import Harness, smits
from tests.support.receiver import Receiver
from tests.support.verify import verify_both
from tests.support.waiting import eventually


async def _subscribe(app: Harness, url: str, **fields: Any) -> dict[str, Any]:
    response = await app.api.post("/v1/subscriptions", json={"url": url, **fields})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _deliveries(app: Harness, **params: str) -> list[dict[str, Any]]:
    response = await app.api.get("/v1/deliveries", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()
    return items


async def _received(receiver: Receiver, count: int, *, within: float = 30.0) -> None:
    async def probe() -> int:
        return len(receiver.received)

    await eventually(probe, lambda n: n >= count, within=within, what=f"{count} webhook requests")


async def test_three_failures_then_success_keeps_the_webhook_id_and_logs_four_attempts(settings: Settings) -> None:
    with Receiver() as receiver:
        receiver.script(500, 503, 502)
        async with smits(settings, ["notifier"]) as app:
            sub = await _subscribe(app, receiver.url)
            await publish(settings, [review_event(uuid.uuid4(), 1)])
            await _received(receiver, 4)
            delivered = await eventually(
                lambda: _deliveries(app, status="delivered"), lambda d: len(d) == 1, what="delivered"
            )
    assert len(receiver.received) == 4
    assert len(set(receiver.ids())) == 1
    for message in receiver.received:
        assert verify_both(sub["secret"], message)["type"] == "review.opened"
    assert [a["status_code"] for a in delivered[0]["attempts"]] == [500, 503, 502, 204]
    assert delivered[0]["attempt_count"] == 4
    assert all(a["duration_ms"] >= 0 for a in delivered[0]["attempts"])


async def test_410_gone_disables_the_subscription_with_a_notice(settings: Settings) -> None:
    with Receiver(default=410) as receiver:
        async with smits(settings, ["notifier"]) as app:
            sub = await _subscribe(app, receiver.url)
            await publish(settings, [review_event(uuid.uuid4(), 1)])
            await eventually(lambda: _deliveries(app, status="failed"), lambda d: len(d) == 1, what="failed")
            state = (await app.api.get(f"/v1/subscriptions/{sub['id']}")).json()
            notices = (await app.api.get(f"/v1/subscriptions/{sub['id']}/notices")).json()
            await publish(settings, [review_event(uuid.uuid4(), 1)])
            await asyncio.sleep(1.0)
            total = await app.count(DeliveryRow)
    assert len(receiver.received) == 1
    assert state["enabled"] is False
    assert "410" in state["disabled_reason"]
    assert [n["type"] for n in notices] == ["subscription.disabled"]
    assert total == 1  # a disabled subscription gets no new deliveries


async def test_a_redirect_is_a_failure_and_is_not_followed_then_resend_delivers(settings: Settings) -> None:
    with Receiver(default=(301, {"location": "/moved"})) as receiver:
        async with smits(settings, ["notifier"]) as app:
            await _subscribe(app, receiver.url)
            await publish(settings, [review_event(uuid.uuid4(), 1)])
            failed = await eventually(
                lambda: _deliveries(app, status="failed"), lambda d: len(d) == 1, what="exhausted"
            )
            receiver.default = 204
            resent = await app.api.post(f"/v1/deliveries/{failed[0]['id']}/resend")
            await eventually(lambda: _deliveries(app, status="delivered"), lambda d: len(d) == 1, what="resent")
            again = await app.api.post(f"/v1/deliveries/{failed[0]['id']}/resend")
    schedule = len(settings.delivery_retry_schedule)
    assert [a["status_code"] for a in failed[0]["attempts"]] == [301] * schedule
    assert {message.path for message in receiver.received} == {"/hooks"}  # never went to /moved
    assert len(receiver.received) == schedule + 1
    assert len(set(receiver.ids())) == 1
    assert resent.status_code == 202
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"


async def test_retry_after_on_429_is_honoured(settings: Settings) -> None:
    with Receiver() as receiver:
        receiver.script((429, {"retry-after": "2"}))
        async with smits(settings, ["notifier"]) as app:
            await _subscribe(app, receiver.url)
            await publish(settings, [review_event(uuid.uuid4(), 1)])
            await _received(receiver, 2)
    first, second = receiver.received[:2]
    assert second.at - first.at >= 2.0  # the schedule alone would have retried after 0.2 s


async def test_during_rotation_both_secrets_verify(settings: Settings) -> None:
    with Receiver() as receiver:
        async with smits(settings, ["notifier"]) as app:
            sub = await _subscribe(app, receiver.url)
            rotated = await app.api.post(f"/v1/subscriptions/{sub['id']}/secret/rotate")
            await publish(settings, [review_event(uuid.uuid4(), 1)])
            await _received(receiver, 1)
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert new.startswith("whsec_")
    assert new != sub["secret"]
    message = receiver.received[0]
    assert len(message.headers["webhook-signature"].split(" ")) == 2
    verify_both(sub["secret"], message)
    verify_both(new, message)
    unrelated = "whsec_" + base64.b64encode(bytes(32)).decode()
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(unrelated).verify(message.body, dict(message.headers))


async def test_after_the_grace_period_only_the_new_secret_signs(settings: Settings) -> None:
    with Receiver() as receiver:
        async with smits(tuned(settings, webhook_secret_grace_s=0), ["notifier"]) as app:
            sub = await _subscribe(app, receiver.url)
            new = (await app.api.post(f"/v1/subscriptions/{sub['id']}/secret/rotate")).json()["secret"]
            await publish(settings, [review_event(uuid.uuid4(), 1)])
            await _received(receiver, 1)
    message = receiver.received[0]
    verify_both(new, message)
    with pytest.raises(svix.webhooks.WebhookVerificationError):
        svix.webhooks.Webhook(sub["secret"]).verify(message.body, dict(message.headers))


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:8080/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://127.0.0.1/",
        "http://100.64.0.9/",
        "http://user:pw@93.184.216.34/",
    ],
)
async def test_non_global_targets_are_refused_without_the_allowlist(settings: Settings, url: str) -> None:
    async with smits(tuned(settings, webhook_allow_cidrs=()), ["notifier"]) as app:
        response = await app.api.post("/v1/subscriptions", json={"url": url})
    assert response.status_code == 422
    assert response.json()["field"] == "url"
    assert response.headers["content-type"] == "application/problem+json"


async def test_one_reviews_webhooks_arrive_in_event_order(settings: Settings) -> None:
    review = uuid.uuid4()
    events = [review_event(review, n) for n in (1, 2, 3)]
    with Receiver() as receiver:
        receiver.script(500, 500)  # the first event fails twice; the later ones must wait for it
        async with smits(settings, ["notifier"]) as app:
            await _subscribe(app, receiver.url)
            await publish(settings, events)
            await _received(receiver, 5)
    order = [message.headers["webhook-id"] for message in receiver.received]
    expected = [f"msg_{e.id.hex}" for e in events]
    assert order == [expected[0]] * 3 + expected[1:]


async def test_subscription_filters_on_type_category_severity_and_scope(settings: Settings) -> None:
    review = uuid.uuid4()
    wanted = review_event(review, 1, category="budget_change", severity="high", scope="bu-9")
    others = [
        review_event(uuid.uuid4(), 1, category="goal_change", severity="high", scope="bu-9"),
        review_event(uuid.uuid4(), 1, category="budget_change", severity="low", scope="bu-9"),
        review_event(uuid.uuid4(), 1, category="budget_change", severity="high", scope="bu-1"),
    ]
    with Receiver() as receiver:
        async with smits(settings, ["notifier"]) as app:
            await _subscribe(
                app,
                receiver.url,
                event_types=["review.*"],
                categories=["budget_change"],
                severities=["high", "critical"],
                scopes=["bu-9"],
            )
            await publish(settings, [*others, wanted])
            await _received(receiver, 1)
            await asyncio.sleep(1.0)
    assert receiver.ids() == [f"msg_{wanted.id.hex}"]


async def test_sustained_failure_disables_the_subscription(settings: Settings) -> None:
    fast = tuned(settings, webhook_disable_after_s=0.5, delivery_retry_schedule=(0.0,) + (0.2,) * 20)
    with Receiver(default=500) as receiver:
        async with smits(fast, ["notifier"]) as app:
            sub = await _subscribe(app, receiver.url)
            await publish(fast, [review_event(uuid.uuid4(), 1)])

            async def state() -> dict[str, Any]:
                body: dict[str, Any] = (await app.api.get(f"/v1/subscriptions/{sub['id']}")).json()
                return body

            disabled = await eventually(state, lambda s: s["enabled"] is False, what="disabled")
            notices = (await app.api.get(f"/v1/subscriptions/{sub['id']}/notices")).json()
            pending = await _deliveries(app, status="pending")
    assert "failing without a success" in disabled["disabled_reason"]
    assert [n["type"] for n in notices] == ["subscription.disabled"]
    assert len(pending) == 1  # kept, not lost: it resumes if the subscription is enabled again
    assert 3 <= len(receiver.received) < 21


async def test_rate_limit_spaces_deliveries(settings: Settings) -> None:
    with Receiver() as receiver:
        async with smits(settings, ["notifier"]) as app:
            await _subscribe(app, receiver.url, rate_limit_per_s=5)
            await publish(settings, [review_event(uuid.uuid4(), 1) for _ in range(6)])
            await _received(receiver, 6)
    arrivals = sorted(message.at for message in receiver.received)
    assert arrivals[-1] - arrivals[0] >= 5 * 0.2 * 0.9  # six sends at 5/s span at least five intervals


async def test_a_successor_planned_while_its_predecessor_is_recorded_does_not_wait_for_ever(settings: Settings) -> None:
    """Planning locks the pending predecessors it saw, so recording one of them waits and then sees (and
    makes ready) the successor; without the lock the successor would stay not ready, never sent."""
    engine = create_engine(settings.database_url.get_secret_value())
    uow = UnitOfWork(engine)
    now = datetime.now(UTC)
    subscription_id, review = uuid.uuid4(), str(uuid.uuid4())
    pair = (subscription_id, review)

    def delivery(sequence: int, *, ready: bool) -> DeliveryRow:
        return DeliveryRow(
            id=uuid.uuid4(),
            msg_id=f"msg_{uuid.uuid4().hex}",
            subscription_id=subscription_id,
            event_type="review.trigger_attached",
            review_id=review,
            sequence=sequence,
            body="{}",
            status=DeliveryStatus.PENDING,
            attempt_count=0,
            next_attempt_at=now,
            created_at=now,
            ready=ready,
        )

    async def record_delivered(delivery_id: uuid.UUID) -> None:  # what the delivery worker does
        async with uow.begin() as session:
            row = await session.get(DeliveryRow, delivery_id)
            assert row is not None
            row.status = DeliveryStatus.DELIVERED
            await session.flush()
            await promote_next(session, {pair})

    try:
        first, second = delivery(1, ready=True), delivery(2, ready=False)
        async with uow.begin() as session:
            session.add(
                SubscriptionRow(
                    id=subscription_id,
                    url="http://127.0.0.1:9/",
                    secret="whsec_x",
                    event_types=[],
                    enabled=True,
                    created_at=now,
                )
            )
            await session.flush()
            session.add(first)
        async with uow.begin() as planning:
            assert await pending_pairs(planning, {pair}) == {pair}
            recording = asyncio.create_task(record_delivered(first.id))
            await asyncio.sleep(0.5)
            assert not recording.done(), "recording the predecessor must wait for the planning transaction"
            planning.add(second)
        await recording
        async with uow.begin() as session:
            stored = await session.get(DeliveryRow, second.id)
            assert stored is not None
            assert stored.ready
    finally:
        await engine.dispose()


async def test_a_replayed_batch_does_not_leave_a_new_event_waiting_for_a_delivered_one(settings: Settings) -> None:
    """After a crash between the DB commit and the offset commit a batch comes again, possibly longer: an
    event whose predecessor was planned the first time and has been delivered since is ready at once."""
    engine = create_engine(settings.database_url.get_secret_value())
    uow = UnitOfWork(engine)
    now = datetime.now(UTC)
    review = uuid.uuid4()
    messages = [
        Message(
            topic="reviews.events",
            partition=0,
            offset=offset,
            key=str(review).encode(),
            value=orjson.dumps(event.model_dump(mode="json")),
            headers=(),
            timestamp_ms=0,
        )
        for offset, event in enumerate([review_event(review, 1), review_event(review, 2)])
    ]
    try:
        async with uow.begin() as session:
            session.add(
                SubscriptionRow(
                    id=uuid.uuid4(),
                    url="http://127.0.0.1:9/",
                    secret="whsec_x",
                    event_types=[],
                    enabled=True,
                    created_at=now,
                )
            )
        async with uow.begin() as session:
            assert await plan_deliveries(session, messages[:1], now=now) == 1
        async with uow.begin() as session:  # delivered, as the worker records it
            first = await session.scalar(select(DeliveryRow))
            assert first is not None
            first.status = DeliveryStatus.DELIVERED
        async with uow.begin() as session:
            await plan_deliveries(session, messages, now=now)  # the replay, one event longer
        async with uow.begin() as session:
            by_sequence = {row.sequence: row for row in await session.scalars(select(DeliveryRow))}
        assert sorted(by_sequence) == [1, 2]
        assert by_sequence[2].status == DeliveryStatus.PENDING
        assert by_sequence[2].ready
    finally:
        await engine.dispose()


async def test_a_subscription_reports_its_last_success_and_since_when_it_fails(settings: Settings) -> None:
    with Receiver() as receiver:
        async with smits(settings, ["notifier"]) as app:
            sub = await _subscribe(app, receiver.url)
            fresh = (await app.api.get(f"/v1/subscriptions/{sub['id']}")).json()
            await publish(settings, [review_event(uuid.uuid4(), 1)])
            delivered = await eventually(
                lambda: _deliveries(app, status="delivered"), lambda d: len(d) == 1, what="delivered"
            )
            healthy = (await app.api.get(f"/v1/subscriptions/{sub['id']}")).json()
            receiver.default = 500
            await publish(settings, [review_event(uuid.uuid4(), 1)])
            failed = await eventually(lambda: _deliveries(app, status="failed"), lambda d: len(d) == 1, what="failed")
            failing = next(s for s in (await app.api.get("/v1/subscriptions")).json() if s["id"] == sub["id"])
            one = await app.api.get(f"/v1/deliveries/{failed[0]['id']}")
            missing = await app.api.get(f"/v1/deliveries/{uuid.uuid4()}")
    assert (sub["last_success_at"], sub["failing_since"]) == (None, None)
    assert (fresh["last_success_at"], fresh["failing_since"]) == (None, None)
    assert healthy["last_success_at"] == delivered[0]["attempts"][0]["attempted_at"]
    assert healthy["failing_since"] is None
    assert failing["last_success_at"] == healthy["last_success_at"]
    assert failing["failing_since"] == failed[0]["attempts"][0]["attempted_at"]
    assert one.status_code == 200
    assert one.json() == failed[0]
    assert [a["status_code"] for a in one.json()["attempts"]] == [500] * len(settings.delivery_retry_schedule)
    assert missing.status_code == 404
