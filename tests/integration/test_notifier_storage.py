"""A receiver's answer is stored safely on both databases: NUL bytes, invalid UTF-8 and an absurd
`Retry-After` are recorded, and the neighbour's webhook is not sent again at lease expiry."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from alembic import command
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.cli import alembic_config
from services.core.db import UnitOfWork, create_engine, one_snapshot
from services.core.kafka import Message
from services.core.settings import Settings
from services.notifier.delivery import DeliveryWorker
from services.notifier.egress import WebhookClient
from services.notifier.flows import plan_deliveries
from services.notifier.persistence import AttemptRow, SubscriptionRow
from tests.support.events import review_event
from tests.support.hostile import Answer, HostileReceiver
from tests.support.receiver import Receiver
from tests.support.subscriptions import subscribe_directly
from tests.support.waiting import eventually

LEASE_S = 1.0
ANSWERS = (
    Answer(status=b"200", body=b"a\x00b\xff\xfe\xc0"),
    Answer(status=b"429", headers=((b"retry-after", b"9" * 40),)),
)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        url: str = request.getfixturevalue("database_url")
        return url
    url = f"sqlite+aiosqlite:///{tmp_path / 'notifier.db'}"
    command.upgrade(alembic_config(url), "head")
    return url


async def test_hostile_answers_are_stored_on_both_databases(database: str, kafka: str) -> None:
    settings = Settings(
        database_url=database,
        kafka_bootstrap=kafka,
        webhook_allow_cidrs=("127.0.0.0/8",),
        delivery_timeout_s=0.5,
        delivery_lease_s=LEASE_S,
    )
    engine = create_engine(database)
    uow = UnitOfWork(engine)
    events = [review_event(uuid.uuid4(), 1) for _ in ANSWERS]
    messages = [
        Message(
            topic="reviews.events",
            partition=0,
            offset=n,
            key=None,
            value=orjson.dumps(e.model_dump(mode="json")),
            headers=(),
            timestamp_ms=0,
        )
        for n, e in enumerate(events)
    ]
    try:
        async with HostileReceiver(answer=ANSWERS[0], more=ANSWERS[1:]) as hostile:
            with Receiver() as healthy:
                await subscribe_directly(uow, healthy.url)
                await subscribe_directly(uow, hostile.url)
                async with uow.begin() as session:
                    await plan_deliveries(session, messages, now=datetime.now(UTC))
                worker = DeliveryWorker(uow=uow, settings=settings, client=WebhookClient(settings.allow_networks))
                stop = asyncio.Event()
                task = asyncio.create_task(worker.run(stop))
                try:
                    await eventually(_attempts(uow), lambda rows: len(rows) >= 4, within=15, what="4 attempts")
                    await asyncio.sleep(LEASE_S + 0.5)  # a rolled-back recording would resend by now
                finally:
                    stop.set()
                    await asyncio.wait_for(task, timeout=10)
        stored = await _attempts(uow)()
    finally:
        await engine.dispose()
    assert sorted(healthy.ids()) == sorted(f"msg_{e.id.hex}" for e in events)
    assert len(hostile.received) == 2  # each answer recorded the first time: never resent
    responses = {status: response for status, response in stored}
    assert responses[200] == "a\ufffdb\ufffd\ufffd\ufffd"  # NUL and each invalid byte replaced
    assert responses[429] == ""


Stored = list[tuple[int | None, str | None]]


def _attempts(uow: UnitOfWork) -> Callable[[], Awaitable[Stored]]:
    async def probe() -> Stored:
        async with uow.begin() as session:
            rows = (await session.execute(select(AttemptRow.status_code, AttemptRow.response))).all()
        return [(status, response) for status, response in rows]

    return probe


@pytest.mark.parametrize("snapshot", [True, False])
async def test_one_snapshot_hides_what_commits_between_two_reads(uow: UnitOfWork, snapshot: bool) -> None:
    """GET /v1/deliveries reads the deliveries, then their attempts (one_snapshot first): an attempt recorded in
    between, with its delivery's new status, must not be listed next to the old status. Without one_snapshot,
    PostgreSQL's second read sees the commit (the control case)."""

    async def count(session: AsyncSession) -> int:
        return len((await session.scalars(select(SubscriptionRow.id))).all())

    async with uow.begin() as reader:
        if snapshot:
            await one_snapshot(reader)
        before = await count(reader)
        await subscribe_directly(uow, "http://127.0.0.1:9/", description="committed in between")
        after = await count(reader)
    assert (after == before) is snapshot, (before, after)
