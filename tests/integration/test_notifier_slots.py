"""Several slow receivers together cannot take every delivery slot: a subscriber with nothing in flight always
finds one (the worker keeps the last free slots for such subscribers)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta

from aiohttp import web
from sqlalchemy import select

from services.core.db import UnitOfWork, create_engine
from services.core.settings import Settings
from services.notifier.delivery import DeliveryWorker
from services.notifier.persistence import DeliveryRow, SubscriptionRow
from services.notifier.retries import DeliveryStatus
from services.notifier.signing import generate_secret
from tests.support.answering import Endpoint, answering

HOLD_S = 20.0
"""How long a slow receiver holds its answer at most (it answers as soon as every healthy webhook is in)."""
EVENTS = 8


async def _seed(uow: UnitOfWork, endpoint: Endpoint, names: list[str]) -> None:
    now = datetime.now(UTC) - timedelta(seconds=1)
    async with uow.begin() as session:
        subscriptions = [
            SubscriptionRow(
                id=uuid.uuid4(),
                url=endpoint.url(name),
                secret=generate_secret(),
                event_types=[],
                created_at=now,
            )
            for name in names
        ]
        session.add_all(subscriptions)
        await session.flush()
        for n in range(EVENTS):  # each event fanned out to every subscription
            for subscription in subscriptions:
                session.add(
                    DeliveryRow(
                        msg_id=f"msg_{n}",
                        subscription_id=subscription.id,
                        event_type="review.opened",
                        review_id=None,
                        sequence=n,
                        body="{}",
                        status=DeliveryStatus.PENDING,
                        next_attempt_at=now + timedelta(milliseconds=n),
                        created_at=now,
                        ready=True,
                    )
                )


async def test_three_slow_receivers_do_not_hold_every_slot(settings: Settings) -> None:
    """The slow receivers answer only once every healthy webhook has arrived (or after `HOLD_S`): so the healthy
    subscriber gets all of them while no slow one has answered, or it waited for a slow one's slot. No wall-clock
    bound, so a loaded machine cannot make it pass or fail."""
    tuned = settings.model_copy(update={"delivery_timeout_s": HOLD_S + 5, "delivery_lease_s": 60.0})
    # 3 slow subscriptions x 4 slots each (SMITS_DELIVERY_SUBSCRIPTION_CONCURRENCY) > 10 slots in all.
    healthy: list[str] = []
    slow_answers = 0
    slow_answers_when_all_arrived: list[int] = []
    all_arrived = asyncio.Event()

    async def answer(request: web.Request) -> web.Response:
        nonlocal slow_answers
        if request.host.startswith("slow"):
            with contextlib.suppress(TimeoutError):  # within the deadline: a slow 200
                await asyncio.wait_for(all_arrived.wait(), HOLD_S)
            slow_answers += 1
        else:
            healthy.append(request.headers["webhook-id"])
            if len(healthy) == EVENTS:
                slow_answers_when_all_arrived.append(slow_answers)
                all_arrived.set()
        return web.Response(status=200, body=b"ok")

    engine = create_engine(tuned.database_url.get_secret_value())
    uow = UnitOfWork(engine)
    async with answering(answer) as endpoint:
        await _seed(uow, endpoint, ["slow1", "slow2", "slow3", "healthy"])
        worker = DeliveryWorker(uow=uow, settings=tuned, client=endpoint.client)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_arrived.wait(), 2 * HOLD_S)
        finally:
            stop.set()
            await asyncio.wait_for(task, 2 * HOLD_S)
            await engine.dispose()
    assert sorted(healthy) == sorted(f"msg_{n}" for n in range(EVENTS))
    assert slow_answers_when_all_arrived == [0], "the healthy subscriber waited for a slow one's slot"


async def test_a_send_whose_lease_ran_out_is_not_claimed_again_by_its_own_worker(settings: Settings) -> None:
    """A stalled loop can let a lease run out while its send is still in flight; the worker that holds it must not
    claim it again (under load this sent one webhook twice to a healthy receiver)."""
    # Room for every event at once, so only the held-set (not the subscription's cap) can keep them from a claim.
    tuned = settings.model_copy(
        update={
            "delivery_timeout_s": 1.0,
            "delivery_lease_s": 2.0,
            "delivery_concurrency": 4 * EVENTS,
            "delivery_subscription_concurrency": 2 * EVENTS,
        }
    )
    clock = [datetime.now(UTC)]
    requests: list[str] = []
    all_sent, release = asyncio.Event(), asyncio.Event()

    async def answer(request: web.Request) -> web.Response:
        requests.append(request.headers["webhook-id"])
        if len(requests) == EVENTS:
            all_sent.set()
        await release.wait()
        return web.Response(status=200, body=b"ok")

    engine = create_engine(tuned.database_url.get_secret_value())
    uow = UnitOfWork(engine)
    async with answering(answer) as endpoint:
        worker = DeliveryWorker(uow=uow, settings=tuned, client=endpoint.client, clock=lambda: clock[0])
        try:
            await _seed(uow, endpoint, ["healthy"])
            assert await worker.dispatch()
            await asyncio.wait_for(all_sent.wait(), 10)
            clock[0] += timedelta(seconds=10)  # every lease has run out; the sends are still in flight
            await worker.dispatch()
            await asyncio.sleep(0.2)
            assert sorted(requests) == sorted(f"msg_{n}" for n in range(EVENTS)), "a held delivery was sent twice"
            release.set()
            stop = asyncio.Event()
            stop.set()
            await worker.run(stop)  # drains: every send recorded once
        finally:
            await engine.dispose()
    async with uow.begin() as session:
        rows = (await session.scalars(select(DeliveryRow))).all()
    assert [row.attempt_count for row in rows] == [1] * EVENTS
