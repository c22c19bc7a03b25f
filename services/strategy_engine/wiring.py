"""The strategy engine's wiring: its relay, consumer, timers and routers as one `ServiceUnit` for `smits serve
engine|all` (imported only by the composition root, `services/app.py`)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter

from services.core.observability import get_logger
from services.core.outbox import OutboxRelay
from services.core.runtime import Runtime, ServiceUnit
from services.strategy_engine.persistence import EngineOutboxRow
from services.strategy_engine.policies import load
from services.strategy_engine.timers import TimerLoop
from services.strategy_engine.transport import cycle, dashboard, documents, links, pending, policies
from services.strategy_engine.transport.consumer import accepted_consumer

log = get_logger(__name__)


def build(runtime: Runtime) -> ServiceUnit:
    policy_set = load(runtime.settings.policies)  # an invalid file stops the start with a clear message
    log.info(
        "policies loaded",
        source=str(runtime.settings.policies or "bundled defaults"),
        policies=[p.id for p in policy_set.policies],
    )
    relay = OutboxRelay(uow=runtime.uow, row=EngineOutboxRow, producer=runtime.producer, settings=runtime.settings)
    consumer = accepted_consumer(settings=runtime.settings, uow=runtime.uow, relay=relay, policies=policy_set)
    timers = TimerLoop(
        uow=runtime.uow,
        relay=relay,
        interval_s=runtime.settings.timer_interval_s,
        policies=policy_set,
        reminder_offsets=[timedelta(seconds=s) for s in runtime.settings.reminder_offsets],
    )
    router = APIRouter()
    router.include_router(dashboard.build_router(runtime))
    router.include_router(cycle.build_router(runtime, policy_set))
    router.include_router(documents.build_router(runtime))
    router.include_router(links.build_router(runtime))
    router.include_router(pending.build_router(runtime))
    router.include_router(policies.build_router(runtime, policy_set))
    return ServiceUnit(
        name="engine",
        router=router,
        workers=[consumer.run, relay.run, timers.run],
        ready_checks=[consumer.is_assigned],
        outboxes=[EngineOutboxRow.__tablename__],
        parked=[consumer.parked],
    )
