"""The `triggers` consumer: the ingest flow and its after-commit hooks, a relay wake-up and the metrics and logs
of what committed (`core.kafka.BatchConsumer` owns the transaction, the stored position, retries and parking)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.contracts import topics
from services.core.db import UnitOfWork
from services.core.kafka import BatchConsumer, Message
from services.core.observability import TRIGGERS, get_logger
from services.core.outbox import OutboxRelay
from services.core.settings import Settings
from services.trigger_ingest.flows import IngestedBatch, dead_letter_skipped, ingest_batch

log = get_logger(__name__)


def trigger_consumer(
    *,
    settings: Settings,
    uow: UnitOfWork,
    relay: OutboxRelay,
    after_handle: Callable[[Sequence[Message]], None] | None = None,
) -> BatchConsumer[IngestedBatch]:
    async def flow(session: AsyncSession, batch: Sequence[Message], now: datetime) -> IngestedBatch:
        return await ingest_batch(session, batch, now=now)

    return BatchConsumer(
        settings=settings,
        uow=uow,
        topic=topics.TRIGGERS,
        group="ingest",
        flow=flow,
        hooks=[lambda outcome: relay.hand_over(outcome.outbox), count],
        on_skip=dead_letter_skipped,
        after_handle=after_handle,
        deliver_unreadable=True,  # dead-lettered like any other bad record
    )


def count(outcome: IngestedBatch) -> None:
    """Metrics and logs of a committed batch."""
    counts = Counter(("accepted", trigger.category.value) for trigger in outcome.accepted)
    counts.update(("duplicate", trigger.category.value) for trigger in outcome.duplicates)
    for rejection in outcome.rejected:
        log.info("trigger dead-lettered", reason=rejection.kind, detail=rejection.message)
    if outcome.rejected:
        counts["rejected", "unknown"] = len(outcome.rejected)
    for labels, n in counts.items():
        TRIGGERS.labels(*labels).inc(n)
    log.debug(
        "batch stored",
        accepted=len(outcome.accepted),
        duplicates=len(outcome.duplicates),
        rejected=len(outcome.rejected),
    )
