"""Runs the services in-process exactly as `smits serve` composes them, with an authenticated API client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent
from sqlalchemy import func, select

from services.app import selected
from services.core.auth import Scope, create_key
from services.core.identity import store
from services.core.identity.model import Role
from services.core.runtime import Runtime, build_app, running
from services.core.settings import Settings

ALL = ("ingest", "engine", "notifier")


@dataclass
class Harness:
    runtime: Runtime
    api: httpx.AsyncClient
    """Authenticated with a service-account key holding every scope (no person: it cannot approve or
    acknowledge as anyone); `person` gives a client acting as a named person."""
    transport: httpx.AsyncBaseTransport

    async def count(self, column: Any) -> int:
        async with self.runtime.uow.begin() as session:
            return int(await session.scalar(select(func.count()).select_from(column)) or 0)

    async def person(
        self,
        email: str,
        *roles: Role,
        org_units: Sequence[str] = (),
        scopes: Sequence[Scope] = (Scope.ADMIN,),
    ) -> httpx.AsyncClient:
        """A client acting as the person `email` (created with `roles` and `org_units` unless they exist,
        units created as needed) through an API key they own; its scopes are intersected with their roles.
        Closed with the harness."""
        now = datetime.now(UTC)
        async with self.runtime.uow.begin() as session:
            for unit in org_units:
                if not [u for u in await store.list_units(session) if u.name == unit]:
                    await store.create_unit(session, name=unit, parent=None, lead=None, now=now)
            if await store.principal_by_email(session, email) is None:
                await store.create_person(
                    session, email=email, name=email.split("@")[0], roles=roles, org_units=org_units, now=now
                )
            _, key = await store.create_key(session, name=f"{email} (tests)", scopes=scopes, owner=email, now=now)
        client = httpx.AsyncClient(
            transport=self.transport, base_url="http://smits", headers={"authorization": f"Bearer {key}"}
        )
        self._clients.append(client)
        return client

    _clients: list[httpx.AsyncClient] = field(default_factory=list)


@asynccontextmanager
async def smits(settings: Settings, names: Sequence[str] = ALL) -> AsyncIterator[Harness]:
    async with running(settings, selected(list(names))) as (runtime, units):
        async with runtime.uow.begin() as session:
            key = await create_key(session, name="tests", scopes=[Scope.ADMIN])
        transport = httpx.ASGITransport(app=build_app(runtime, units))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://smits", headers={"authorization": f"Bearer {key}"}
        ) as api:
            harness = Harness(runtime=runtime, api=api, transport=transport)
            try:
                yield harness
            finally:
                for client in harness._clients:
                    await client.aclose()


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
