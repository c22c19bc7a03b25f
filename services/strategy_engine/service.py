"""Assembly of the strategy engine for `smits serve engine|all`."""

from __future__ import annotations

from services.core.outbox import OutboxRelay
from services.core.runtime import Runtime, ServiceUnit
from services.strategy_engine.persistence import EngineOutboxRow
from services.strategy_engine.transport.consumer import accepted_consumer
from services.strategy_engine.transport.http import build_router


def build(runtime: Runtime) -> ServiceUnit:
    relay = OutboxRelay(uow=runtime.uow, row=EngineOutboxRow, producer=runtime.producer, settings=runtime.settings)
    consumer = accepted_consumer(settings=runtime.settings, uow=runtime.uow, relay=relay)
    return ServiceUnit(
        name="engine",
        router=build_router(runtime),
        workers=[consumer.run, relay.run],
        ready_checks=[consumer.is_assigned],
    )
