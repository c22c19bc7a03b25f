"""The `triggers.accepted` consumer: the correlation flow, then a relay wake-up after commit (the flow's review
events are counted after commit too; `core.kafka.BatchConsumer` owns the transaction, the stored position,
retries and parking)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts import topics
from services.core.db import UnitOfWork
from services.core.kafka import BatchConsumer, Message
from services.core.outbox import OutboxRelay
from services.core.settings import Settings
from services.strategy_engine.flows.correlation import handle_accepted_batch
from services.strategy_engine.policies import Decision, PolicySet


def accepted_consumer(
    *,
    settings: Settings,
    uow: UnitOfWork,
    relay: OutboxRelay,
    policies: PolicySet,
    after_handle: Callable[[Sequence[Message]], None] | None = None,
) -> BatchConsumer[list[Decision]]:
    async def flow(session: AsyncSession, batch: Sequence[Message], now: datetime) -> list[Decision]:
        return await handle_accepted_batch(session, batch, policies=policies, now=now)

    return BatchConsumer(
        settings=settings,
        uow=uow,
        topic=topics.TRIGGERS_ACCEPTED,
        group="engine",
        flow=flow,
        hooks=[lambda _: relay.wake()],
        after_handle=after_handle,
    )
