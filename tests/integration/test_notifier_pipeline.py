"""The delivery worker's pipeline: senders never wait for the database, finished attempts are recorded in groups,
and a group the database refuses is recorded one attempt at a time."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta

from aiohttp import web
from sqlalchemy import select, text

from services.core.db import UnitOfWork, create_engine
from services.core.settings import Settings
from services.notifier.delivery import DeliveryWorker
from services.notifier.persistence import AttemptRow, DeliveryRow, SubscriptionRow
from services.notifier.recording import Finished, Recorder
from services.notifier.retries import AttemptResult, DeliveryStatus
from services.notifier.signing import generate_secret
from tests.support.answering import answering

EVENTS = 12


async def _seed(
    uow: UnitOfWork, *, events: int, review: str | None = None, url: str = "https://receiver.example/hooks"
) -> uuid.UUID:
    """One subscription to `url` with `events` due deliveries (one review's, in order, if `review` is given)."""
    now = datetime.now(UTC) - timedelta(seconds=1)
    subscription = SubscriptionRow(id=uuid.uuid4(), url=url, secret=generate_secret(), event_types=[], created_at=now)
    async with uow.begin() as session:
        session.add(subscription)
        await session.flush()
        for n in range(events):
            session.add(
                DeliveryRow(
                    msg_id=f"msg_{n}",
                    subscription_id=subscription.id,
                    event_type="review.opened",
                    review_id=review,
                    sequence=n,
                    body="{}",
                    status=DeliveryStatus.PENDING,
                    next_attempt_at=now + timedelta(milliseconds=n),
                    created_at=now,
                    ready=review is None or n == 0,
                )
            )
    return subscription.id


async def _deliveries(uow: UnitOfWork) -> list[DeliveryRow]:
    async with uow.begin() as session:
        return list((await session.scalars(select(DeliveryRow).order_by(DeliveryRow.sequence))).all())


async def test_webhooks_go_on_while_recording_waits_for_the_database(settings: Settings) -> None:
    """With the attempts log locked, no attempt can be recorded; the worker still sends every due webhook (a slot
    takes the next claim as soon as its POST ends), and records each once when the lock is gone."""
    received: list[str] = []
    all_received = asyncio.Event()

    async def answer(request: web.Request) -> web.Response:
        received.append(request.headers["webhook-id"])
        if len(received) == EVENTS:
            all_received.set()
        return web.Response(status=200, body=b"ok")

    engine = create_engine(settings.database_url.get_secret_value())
    uow = UnitOfWork(engine)
    async with answering(answer) as endpoint:
        await _seed(uow, events=EVENTS, url=endpoint.url("receiver"))
        worker = DeliveryWorker(uow=uow, settings=settings, client=endpoint.client)
        stop = asyncio.Event()
        try:
            async with engine.connect() as blocker:
                transaction = await blocker.begin()
                await blocker.execute(text("LOCK TABLE notifier_attempts IN EXCLUSIVE MODE"))
                task = asyncio.create_task(worker.run(stop))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(all_received.wait(), 20)
                assert sorted(received) == sorted(f"msg_{n}" for n in range(EVENTS)), "a sender waited for the database"
                await transaction.rollback()
            stop.set()
            await asyncio.wait_for(task, 20)
            rows = await _deliveries(uow)
        finally:
            stop.set()
            await engine.dispose()
    assert [(row.status, row.attempt_count, row.locked_until) for row in rows] == [("delivered", 1, None)] * EVENTS
    assert len(received) == EVENTS  # nothing sent twice


async def test_one_review_is_sent_in_order_through_the_pipeline(settings: Settings) -> None:
    received: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        received.append(request.headers["webhook-id"])
        return web.Response(status=200, body=b"ok")

    engine = create_engine(settings.database_url.get_secret_value())
    uow = UnitOfWork(engine)
    async with answering(answer) as endpoint:
        await _seed(uow, events=EVENTS, review=str(uuid.uuid4()), url=endpoint.url("receiver"))
        worker = DeliveryWorker(uow=uow, settings=settings, client=endpoint.client)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            for _ in range(200):
                if len(received) == EVENTS:
                    break
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
            await engine.dispose()
    assert received == [f"msg_{n}" for n in range(EVENTS)]


def _finished(row: DeliveryRow, response: str | None) -> Finished:
    assert row.subscription_id is not None
    return Finished(
        delivery_id=row.id,
        subscription_id=row.subscription_id,
        review_id=row.review_id,
        msg_id=row.msg_id,
        traceparent=None,
        outcome=AttemptResult(status_code=200, duration_ms=3, response=response, error=None, retry_after=None),
        at=datetime.now(UTC),
    )


async def test_a_group_the_database_refuses_is_recorded_one_attempt_at_a_time(settings: Settings) -> None:
    """PostgreSQL refuses NUL in text: the group's transaction fails, and each attempt is then recorded on its own,
    the refused one without its answer; none is lost, none recorded twice, and the review's next one is ready."""
    engine = create_engine(settings.database_url.get_secret_value())
    uow = UnitOfWork(engine)
    await _seed(uow, events=4, review=str(uuid.uuid4()))
    await _seed(uow, events=2)
    recorded: list[uuid.UUID] = []
    recorder = Recorder(uow=uow, settings=settings, recorded=recorded.extend)
    try:
        rows = await _deliveries(uow)
        first_of_review = next(row for row in rows if row.review_id is not None and row.sequence == 0)
        others = [row for row in rows if row.review_id is None]
        group = [_finished(others[0], "fine"), _finished(first_of_review, "bad\x00answer"), _finished(others[1], "ok")]
        for finished in group:
            recorder.add(finished)
        recorder.close()
        await asyncio.wait_for(recorder.run(), 120)  # a hang guard, not a timing: a loaded machine took 20 s
        async with uow.begin() as session:
            attempts = {a.delivery_id: a for a in (await session.scalars(select(AttemptRow))).all()}
        after = {row.id: row for row in await _deliveries(uow)}
    finally:
        await engine.dispose()
    assert sorted(recorded) == sorted(f.delivery_id for f in group)
    assert set(attempts) == {f.delivery_id for f in group}
    assert attempts[others[0].id].response == "fine"
    assert attempts[first_of_review.id].response is None
    assert attempts[first_of_review.id].error == "answer could not be stored"
    assert all(after[f.delivery_id].status == "delivered" for f in group)
    second = next(row for row in after.values() if row.review_id is not None and row.sequence == 1)
    assert second.ready


async def test_a_lease_given_back_is_ended_only_if_it_is_still_the_one_taken(settings: Settings) -> None:
    engine = create_engine(settings.database_url.get_secret_value())
    uow = UnitOfWork(engine)
    await _seed(uow, events=2)
    ours = datetime.now(UTC) + timedelta(seconds=60)
    theirs = ours + timedelta(seconds=5)  # ours ran out and another worker took it
    recorder = Recorder(uow=uow, settings=settings, recorded=lambda ids: None)
    try:
        mine, taken = await _deliveries(uow)
        async with uow.begin() as session:
            for row, until in ((mine, ours), (taken, theirs)):
                stored = await session.get(DeliveryRow, row.id)
                assert stored is not None
                stored.locked_until = until
        recorder.give_back(mine.id, ours)
        recorder.give_back(taken.id, ours)
        recorder.close()
        await asyncio.wait_for(recorder.run(), 120)  # a hang guard, not a timing: a loaded machine took 20 s
        after = {row.id: row.locked_until for row in await _deliveries(uow)}
    finally:
        await engine.dispose()
    assert after == {mine.id: None, taken.id: theirs}
