"""The notifier's wiring: its consumer, delivery worker and router as one `ServiceUnit` for `smits serve
notifier|all` (imported only by the composition root, `services/app.py`)."""

from __future__ import annotations

from services.core.runtime import Runtime, ServiceUnit
from services.notifier.delivery import DeliveryWorker
from services.notifier.egress import webhook_client
from services.notifier.transport.consumer import review_events_consumer
from services.notifier.transport.http import build_router


def build(runtime: Runtime) -> ServiceUnit:
    client = webhook_client(runtime.settings.allow_networks)
    worker = DeliveryWorker(uow=runtime.uow, settings=runtime.settings, client=client)
    consumer = review_events_consumer(settings=runtime.settings, uow=runtime.uow, planned=worker.wake)
    return ServiceUnit(
        name="notifier",
        router=build_router(runtime),
        workers=[consumer.run, worker.run],
        ready_checks=[consumer.is_assigned],
        parked=[consumer.parked],
    )
