"""The `reviews.events` consumer: delivery rows written in the same transaction as the batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from services.contracts import topics
from services.core.db import UnitOfWork, after_commit
from services.core.kafka import BatchConsumer, Message
from services.core.settings import Settings
from services.notifier.flows import plan_deliveries


def review_events_consumer(
    *, settings: Settings, uow: UnitOfWork, planned: Callable[[], None] = lambda: None
) -> BatchConsumer:
    """`planned` runs after a batch's deliveries are committed (the notifier wakes its delivery worker)."""

    async def handle(batch: Sequence[Message]) -> None:
        async with uow.begin() as session:
            await plan_deliveries(session, batch, now=datetime.now(UTC))
            after_commit(session, planned)

    return BatchConsumer(settings=settings, topic=topics.REVIEWS_EVENTS, group="notifier", handle=handle)
