"""The `triggers.accepted` consumer: the correlation flow, then its review events handed to the relay after commit
(published from memory; they are counted after commit too; `core.kafka.BatchConsumer` owns the transaction, the
stored position, retries and parking)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts import topics
from services.core.db import UnitOfWork
from services.core.kafka import BatchConsumer, Message
from services.core.outbox import OutboxRelay
from services.core.settings import Settings
from services.strategy_engine.flows.correlation import CorrelatedBatch, handle_accepted_batch
from services.strategy_engine.policies import PolicySet


def accepted_consumer(
    *,
    settings: Settings,
    uow: UnitOfWork,
    relay: OutboxRelay,
    policies: PolicySet,
    after_handle: Callable[[Sequence[Message]], None] | None = None,
) -> BatchConsumer[CorrelatedBatch]:
    async def flow(session: AsyncSession, batch: Sequence[Message], now: datetime) -> CorrelatedBatch:
        return await handle_accepted_batch(session, batch, policies=policies, now=now)

    return BatchConsumer(
        settings=settings,
        uow=uow,
        topic=topics.TRIGGERS_ACCEPTED,
        group="engine",
        flow=flow,
        hooks=[lambda outcome: relay.hand_over(outcome.outbox)],
        after_handle=after_handle,
    )
