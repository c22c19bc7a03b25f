"""The ingest service's wiring: its relay, consumer and router as one `ServiceUnit` for `smits serve ingest|all`
(imported only by the composition root, `services/app.py`)."""

from __future__ import annotations

from fastapi import APIRouter

from services.core.outbox import OutboxRelay
from services.core.runtime import Runtime, ServiceUnit
from services.trigger_ingest.persistence import IngestOutboxRow
from services.trigger_ingest.transport import dlq, http
from services.trigger_ingest.transport.consumer import trigger_consumer


def build(runtime: Runtime) -> ServiceUnit:
    relay = OutboxRelay(uow=runtime.uow, row=IngestOutboxRow, producer=runtime.producer, settings=runtime.settings)
    consumer = trigger_consumer(settings=runtime.settings, uow=runtime.uow, relay=relay)
    router = APIRouter()
    router.include_router(http.build_router(runtime))
    router.include_router(dlq.build_router(runtime))
    return ServiceUnit(
        name="ingest",
        router=router,
        workers=[consumer.run, relay.run],
        ready_checks=[consumer.is_assigned],
        outboxes=[IngestOutboxRow.__tablename__],
        parked=[consumer.parked],
        body_limits={"/v1/triggers": http.MAX_BODY_BYTES},
    )
