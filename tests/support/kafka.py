"""Raw Kafka helpers for tests: produce arbitrary records, read a whole topic back."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer

from services.core.kafka import open_reader
from services.core.settings import Settings


@dataclass(frozen=True)
class Raw:
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    key: bytes | None = None


async def produce_raw(settings: Settings, topic: str, records: Sequence[Raw]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    try:
        futures = [
            await producer.send(settings.topic(topic), value=r.value, key=r.key, headers=list(r.headers))
            for r in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_topic(settings: Settings, topic: str) -> list[Any]:
    """Every record currently in the topic (all partitions, from the beginning to the current end)."""
    consumer = await open_reader(settings, settings.topic(topic))
    try:
        end = await consumer.end_offsets(list(consumer.assignment()))
        records: list[Any] = []
        while len(records) < sum(end.values()):
            fetched = await consumer.getmany(timeout_ms=1000)
            for batch in fetched.values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()
