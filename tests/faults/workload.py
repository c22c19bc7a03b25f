"""A known workload of triggers (valid, repeated, invalid) and the exact checks that nothing was lost or
duplicated end to end."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select

from services.contracts import topics
from services.core.db import UnitOfWork
from services.core.settings import Settings
from services.strategy_engine.persistence import DecidedTriggerRow, ReviewRow, TimelineRow
from services.trigger_ingest.persistence import AcceptedTriggerRow
from tests.support.kafka import read_topic
from tests.support.receiver import Receiver

STRUCTURED = [("content-type", b"application/cloudevents+json")]
WHEN = datetime.now(UTC).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class Workload:
    valid: list[bytes]
    repeats: list[bytes]
    invalid: list[bytes]
    regulations: int


def build(size: int, seed: int) -> Workload:
    """`size` valid triggers over size/5 regulations (one review each), 10% repeats, 5% invalid."""
    rng = random.Random(seed)
    regulations = max(1, size // 5)
    valid = []
    for n in range(size):
        event = {
            "specversion": "1.0",
            "id": f"t{n}",
            "source": "/faults",
            "type": "smits.trigger.regulation_update.v1",
            "subject": f"bu-{n % 7}",
            "time": WHEN,
            "data": {
                "regulation_id": f"REG-{n % regulations}",
                "title": "t",
                "jurisdiction": "EU",
                "issuing_body": "EP",
                "change_type": "amendment",
                "effective_date": "2027-06-01",
            },
        }
        valid.append(orjson.dumps(event))
    repeats = rng.sample(valid, k=size // 10)
    invalid = [
        orjson.dumps(
            {"specversion": "1.0", "id": f"bad{n}", "source": "/faults", "type": "smits.trigger.weather.v1", "data": {}}
        )
        for n in range(size // 20)
    ]
    return Workload(valid=valid, repeats=repeats, invalid=invalid, regulations=regulations)


async def produce(settings: Settings, workload: Workload, seed: int) -> set[tuple[int, int]]:
    """Publish everything, shuffled; returns the (partition, offset) of each invalid record."""
    rng = random.Random(seed)
    records = [(value, False) for value in workload.valid + workload.repeats] + [(v, True) for v in workload.invalid]
    rng.shuffle(records)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sent = [
            (
                await producer.send(
                    settings.topic(topics.TRIGGERS),
                    value=value,
                    key=orjson.loads(value).get("subject", "x").encode(),
                    headers=STRUCTURED,
                ),
                bad,
            )
            for value, bad in records
        ]
        positions = set()
        for future, bad in sent:
            metadata = await future
            if bad:
                positions.add((metadata.partition, metadata.offset))
        return positions
    finally:
        await producer.stop()


async def count(uow: UnitOfWork, model: type) -> int:
    async with uow.begin() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def progress(uow: UnitOfWork, receiver: Receiver) -> dict[str, int]:
    return {
        "stored": await count(uow, AcceptedTriggerRow),
        "decided": await count(uow, DecidedTriggerRow),
        "reviews": await count(uow, ReviewRow),
        "events": await count(uow, TimelineRow),
        "webhooks": len(set(receiver.ids())),
    }


async def wait_until_done(
    uow: UnitOfWork,
    receiver: Receiver,
    workload: Workload,
    *,
    within: float,
    during: Callable[[dict[str, int]], Awaitable[None]] | None = None,
) -> dict[str, int]:
    """Poll until every valid trigger has a webhook (or time runs out); `during` may disrupt meanwhile."""
    size = len(workload.valid)
    deadline = time.monotonic() + within
    state = await progress(uow, receiver)
    while time.monotonic() < deadline:
        if during is not None:
            await during(state)
        state = await progress(uow, receiver)
        if state["webhooks"] >= size and state["events"] >= size:
            return state
        await asyncio.sleep(0.3)
    return state


async def verify(
    uow: UnitOfWork, receiver: Receiver, settings: Settings, workload: Workload, invalid_positions: set[tuple[int, int]]
) -> None:
    """Exact counts: nothing lost, nothing duplicated, after dedup by webhook-id."""
    size = len(workload.valid)
    async with uow.begin() as session:
        stored = await session.scalar(select(func.count(func.distinct(AcceptedTriggerRow.event_id))))
        stored_rows = await session.scalar(select(func.count()).select_from(AcceptedTriggerRow))
        decided = await session.scalar(select(func.count()).select_from(DecidedTriggerRow))
        reviews = (await session.execute(select(ReviewRow.correlation_key))).scalars().all()
        timeline = set((await session.execute(select(TimelineRow.id))).scalars().all())
    assert stored == stored_rows == size, f"stored {stored_rows} rows for {stored} ids, expected {size}"
    assert decided == size, f"{decided} decisions for {size} triggers"
    assert len(reviews) == len(set(reviews)) == workload.regulations, f"{len(reviews)} reviews"
    assert len(timeline) == size, f"{len(timeline)} review events for {size} triggers"
    received = set(receiver.ids())
    assert received == {f"msg_{event_id.hex}" for event_id in timeline}, (
        f"webhooks: {len(received)} distinct received, {len(timeline)} expected"
    )
    assert len(receiver.received) >= size
    dead = await read_topic(settings, topics.TRIGGERS_DLT)
    origins = {
        (int(dict(r.headers)["__connect.errors.partition"]), int(dict(r.headers)["__connect.errors.offset"]))
        for r in dead
    }
    assert origins == invalid_positions, f"{len(origins)} dead letters for {len(invalid_positions)} invalid"
