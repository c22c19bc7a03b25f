"""The notifier's wiring: its consumer, its delivery, e-mail and digest workers and its router as one
`ServiceUnit` for `smits serve notifier|all` (imported only by the composition root, `services/app.py`)."""

from __future__ import annotations

from services.core.observability import get_logger
from services.core.runtime import Runtime, ServiceUnit, Worker
from services.notifier.delivery import DeliveryWorker
from services.notifier.digests import DigestWorker
from services.notifier.egress import WebhookClient
from services.notifier.mail import MailConfig
from services.notifier.mailing import MailWorker
from services.notifier.smtp import MailServer
from services.notifier.transport.consumer import review_events_consumer
from services.notifier.transport.http import build_router

log = get_logger(__name__)


def build(runtime: Runtime) -> ServiceUnit:
    client = WebhookClient(runtime.settings.allow_networks, connections=runtime.settings.delivery_concurrency)
    worker = DeliveryWorker(uow=runtime.uow, settings=runtime.settings, client=client)
    workers: list[Worker] = [worker.run]
    wakes = [worker.wake]
    server = MailServer.of(runtime.settings)
    if server is None:
        log.info("e-mail channel off: SMITS_SMTP_HOST is not set, so no e-mail is planned")
    else:
        mailer = MailWorker(uow=runtime.uow, settings=runtime.settings, server=server)
        workers.append(mailer.run)
        wakes.append(mailer.wake)
        config = MailConfig.of(runtime.settings)
        if config is not None:  # always, with a mail server
            digests = DigestWorker(uow=runtime.uow, mail=config)
            digests.planned = mailer.wake
            workers.append(digests.run)

    def planned() -> None:
        for wake in wakes:
            wake()

    consumer = review_events_consumer(settings=runtime.settings, uow=runtime.uow, planned=planned)
    return ServiceUnit(
        name="notifier",
        router=build_router(runtime),
        workers=[consumer.run, *workers],
        ready_checks=[consumer.is_assigned],
        parked=[consumer.parked],
    )
