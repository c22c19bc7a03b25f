"""Runs the services in-process exactly as `smits serve` composes them, with an authenticated API client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent
from sqlalchemy import func, select

from services.app import selected
from services.core.auth import Scope, create_key
from services.core.runtime import Runtime, build_app, running
from services.core.settings import Settings

ALL = ("ingest", "engine", "notifier")


@dataclass
class Harness:
    runtime: Runtime
    api: httpx.AsyncClient

    async def count(self, column: Any) -> int:
        async with self.runtime.uow.begin() as session:
            return int(await session.scalar(select(func.count()).select_from(column)) or 0)


@asynccontextmanager
async def smits(settings: Settings, names: Sequence[str] = ALL) -> AsyncIterator[Harness]:
    async with running(settings, selected(list(names))) as (runtime, units):
        async with runtime.uow.begin() as session:
            key = await create_key(session, name="tests", scopes=[Scope.ADMIN])
        transport = httpx.ASGITransport(app=build_app(runtime, units))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://smits", headers={"authorization": f"Bearer {key}"}
        ) as api:
            yield Harness(runtime, api)


def regulation_event(
    *,
    event_id: str = "reg-1",
    regulation_id: str = "DORA-2025",
    subject: str = "bu-payments",
    source: str = "/regulatory/feed",
) -> CloudEvent:
    return CloudEvent(
        attributes={
            "id": event_id,
            "source": source,
            "type": "smits.trigger.regulation_update.v1",
            "subject": subject,
            "time": datetime(2026, 11, 20, 9, 0, tzinfo=UTC),
            "datacontenttype": "application/json",
        },
        data={
            "regulation_id": regulation_id,
            "title": "Digital Operational Resilience Act",
            "jurisdiction": "EU",
            "issuing_body": "European Parliament",
            "change_type": "amendment",
            "effective_date": "2027-01-17",
            "compliance_deadline": "2027-06-30",
        },
    )


async def produce(settings: Settings, events: Sequence[CloudEvent], *, binary: bool = False) -> None:
    """Publish CloudEvents built with the SDK to the `triggers` topic, in structured or binary mode."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for event in events:
            message = ce_kafka.to_binary_event(event) if binary else ce_kafka.to_structured_event(event)
            key = message.key.encode() if isinstance(message.key, str) else message.key
            await producer.send_and_wait(
                settings.topic("triggers"), value=message.value, key=key, headers=list(message.headers.items())
            )
    finally:
        await producer.stop()
