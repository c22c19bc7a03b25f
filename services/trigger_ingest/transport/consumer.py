"""The `triggers` consumer: one transaction per batch, then offsets (see `core.kafka.BatchConsumer`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from services.contracts import topics
from services.core.db import UnitOfWork
from services.core.kafka import BatchConsumer, Message
from services.core.observability import TRIGGERS, get_logger
from services.core.outbox import OutboxRelay
from services.core.settings import Settings
from services.trigger_ingest.flows import ingest_batch, utcnow

log = get_logger(__name__)


def trigger_consumer(
    *,
    settings: Settings,
    uow: UnitOfWork,
    relay: OutboxRelay,
    after_handle: Callable[[Sequence[Message]], None] | None = None,
) -> BatchConsumer:
    async def handle(batch: Sequence[Message]) -> None:
        async with uow.begin() as session:
            outcome = await ingest_batch(session, batch, now=utcnow())
            relay.wake_after_commit(session)
        for trigger in outcome.accepted:
            TRIGGERS.labels("accepted", trigger.category.value).inc()
        for rejection in outcome.rejected:
            log.info("trigger dead-lettered", reason=rejection.kind, detail=rejection.message)
            TRIGGERS.labels("rejected", "unknown").inc()
        for trigger in outcome.duplicates:
            TRIGGERS.labels("duplicate", trigger.category.value).inc()
        log.debug(
            "batch stored",
            size=len(batch),
            accepted=len(outcome.accepted),
            duplicates=len(outcome.duplicates),
            rejected=len(outcome.rejected),
        )

    return BatchConsumer(
        settings=settings,
        topic=topics.TRIGGERS,
        group="ingest",
        handle=handle,
        after_handle=after_handle,
        deliver_unreadable=True,  # dead-lettered like any other bad record
    )
