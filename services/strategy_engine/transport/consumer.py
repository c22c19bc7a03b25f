"""The `triggers.accepted` consumer: one transaction per batch, then offsets."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from services.contracts import topics
from services.core.db import UnitOfWork
from services.core.kafka import BatchConsumer, Message
from services.core.outbox import OutboxRelay
from services.core.settings import Settings
from services.strategy_engine.flows.correlation import handle_accepted_batch
from services.strategy_engine.policies import PolicySet


def accepted_consumer(*, settings: Settings, uow: UnitOfWork, relay: OutboxRelay, policies: PolicySet) -> BatchConsumer:
    async def handle(batch: Sequence[Message]) -> None:
        async with uow.begin() as session:
            await handle_accepted_batch(session, batch, policies=policies, now=datetime.now(UTC))
            relay.wake_after_commit(session)

    return BatchConsumer(settings=settings, topic=topics.TRIGGERS_ACCEPTED, group="engine", handle=handle)
