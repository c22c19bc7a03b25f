"""Composition of services into one process: shared engine and producer, worker tasks, the HTTP app.

Core never imports a service: the composition root (`services/app.py`) imports the three `build` functions
statically and hands them to `running`; services never import each other.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.core import parking
from services.core.auth import BearerVerifier
from services.core.db import UnitOfWork, create_engine
from services.core.http import install_problem_handlers, install_request_middleware, problem_response
from services.core.identity import routes as identity_routes
from services.core.identity import sign_on
from services.core.identity.oidc import OidcProvider, provider_from_settings
from services.core.identity.sign_on import BearerTokens
from services.core.kafka import create_producer, start_when_reachable
from services.core.limits import RequestGuard
from services.core.observability import get_logger
from services.core.positions import Position
from services.core.settings import Settings
from services.core.tracing import instrument

log = get_logger(__name__)


Worker = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


@dataclass(kw_only=True)
class Runtime:
    """What a running process shares between its services."""

    settings: Settings
    engine: AsyncEngine
    uow: UnitOfWork
    producer: AIOKafkaProducer
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    oidc: OidcProvider | None = None
    """The OpenID Connect provider people sign in at (`SMITS_OIDC_*`), if one is configured."""
    bearer: BearerVerifier | None = None
    """Turns the provider's access tokens into callers on the API."""
    draining: bool = False
    failed: bool = False


@dataclass(kw_only=True)
class ServiceUnit:
    name: str
    router: APIRouter | None = None
    workers: list[Worker] = field(default_factory=list)
    ready_checks: list[Callable[[], bool]] = field(default_factory=list)
    parked: list[Callable[[], Sequence[Position]]] = field(default_factory=list)
    """Sources of parked consumer partitions; any makes `/readyz` fail, naming them."""
    body_limits: dict[str, int] = field(default_factory=dict)
    """Path prefix → largest request body accepted there (the default is `SMITS_HTTP_MAX_BODY_BYTES`)."""
    outboxes: list[str] = field(default_factory=list)
    """Outbox tables the service's relays publish; a parked record of one makes `/readyz` fail."""


Builder = Callable[[Runtime], ServiceUnit]
"""A service's composition: what it runs and serves in a process, built from what the process shares."""


class StartupAborted(Exception):
    """Asked to stop before the services were up (e.g. SIGTERM while waiting for Kafka)."""


@asynccontextmanager
async def running(
    settings: Settings, services: Mapping[str, Builder], *, stop: asyncio.Event | None = None
) -> AsyncIterator[tuple[Runtime, list[ServiceUnit]]]:
    """Build `services` (name → build function) and start their workers; on exit drain them (finish in-flight
    batches) and close clients.

    `stop`, when given, is the process's stop request (signals); setting it begins the drain."""
    engine = create_engine(settings.database_url.get_secret_value())
    producer = create_producer(settings)
    oidc = provider_from_settings(settings)
    runtime = Runtime(
        settings=settings,
        engine=engine,
        uow=UnitOfWork(engine),
        producer=producer,
        stop=stop or asyncio.Event(),
        oidc=oidc,
        bearer=BearerTokens(oidc) if oidc is not None else None,
    )
    try:
        units = [build(runtime) for build in services.values()]  # configuration errors surface here, first
        if not await start_when_reachable(producer, "producer", runtime.stop):
            raise StartupAborted
    except BaseException:
        await producer.stop()
        await engine.dispose()
        if oidc is not None:
            await oidc.aclose()
        raise
    tasks = [asyncio.create_task(worker(runtime.stop), name=unit.name) for unit in units for worker in unit.workers]
    for task in tasks:
        task.add_done_callback(lambda t: _on_worker_done(t, runtime))
    names = list(services)
    log.info("services started", services=names, workers=len(tasks))
    try:
        yield runtime, units
    finally:
        runtime.draining = True
        runtime.stop.set()
        _, late = await asyncio.wait(tasks, timeout=settings.shutdown_grace_s) if tasks else (set(), set())
        for task in late:
            log.error("worker did not drain within the grace period; cancelling", worker=task.get_name())
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        await producer.flush()
        await producer.stop()
        await engine.dispose()
        if oidc is not None:
            await oidc.aclose()
        log.info("services stopped", services=names)


def _on_worker_done(task: asyncio.Task[None], runtime: Runtime) -> None:
    if task.cancelled() or task.exception() is None:
        return
    log.error("worker crashed; stopping the process", worker=task.get_name(), exc_info=task.exception())
    runtime.failed = True
    runtime.stop.set()


def build_app(runtime: Runtime, units: Sequence[ServiceUnit]) -> FastAPI:
    app = FastAPI(title="smits", version="0.1.0", description="Strategy Management for IT Services triggers")
    app.state.runtime = runtime
    instrument(app)
    install_problem_handlers(app)
    install_request_middleware(app)
    limits = {prefix: size for unit in units for prefix, size in unit.body_limits.items()}
    app.add_middleware(RequestGuard, default=runtime.settings.http_max_body_bytes, limits=limits)
    app.include_router(_ops_router(runtime, units))
    app.include_router(identity_routes.build_router(settings=runtime.settings, uow=runtime.uow))
    if runtime.oidc is not None:
        app.include_router(sign_on.build_router(settings=runtime.settings, uow=runtime.uow, provider=runtime.oidc))
    for unit in units:
        if unit.router is not None:
            app.include_router(unit.router)
    return app


def _ops_router(runtime: Runtime, units: Sequence[ServiceUnit]) -> APIRouter:
    router = APIRouter(tags=["operations"])
    outboxes = [name for unit in units for name in unit.outboxes]

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers. Checks nothing else on purpose."""
        return {"status": "ok"}

    @router.get("/readyz", response_model=None)
    async def readyz() -> Any:
        """Readiness: the database answers, every consumer holds partitions, no consumer partition and no
        outbox record is parked, and we are not draining."""
        checks: dict[str, bool] = {"draining": not (runtime.draining or runtime.stop.is_set())}
        records: list[dict[str, Any]] = []
        try:
            async with runtime.uow.begin() as session:
                await session.execute(text("SELECT 1"))
                checks["database"] = True
                if outboxes:
                    records = [_parked_view(p) for p in await parking.list_parked(session, outboxes=outboxes, limit=10)]
                    checks["outbox_parked"] = not records
        except Exception:
            checks["database"] = False
        checks["kafka_assignment"] = all(check() for unit in units for check in unit.ready_checks)
        partitions = [position for unit in units for source in unit.parked for position in source()]
        checks["consumer_parked"] = not partitions
        if all(checks.values()):
            return {"status": "ready", "checks": checks}
        problems = []
        if partitions:
            problems.append(_parked_detail(partitions))
        if records:
            more = "+" if len(records) == 10 else ""
            problems.append(f"{len(records)}{more} outbox record(s) parked: {records[0]['error']}")
        detail = "; ".join(problems) or "a readiness check failed"
        return problem_response(
            503, "Not ready", detail, checks=checks, parked_partitions=_report(partitions), parked_records=records
        )

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def _parked_view(record: parking.Parked) -> dict[str, Any]:
    return {
        "id": record.id,
        "outbox": record.outbox,
        "topic": record.topic,
        "size": record.size,
        "error": record.error,
        "parked_at": record.parked_at.isoformat(),
        "resolve": f"smits outbox retry {record.id} | smits outbox drop {record.id}",
    }


def _report(parked: Sequence[Position]) -> list[dict[str, object]]:
    return [
        {"group": p.group, "topic": p.topic, "partition": p.partition, "offset": p.next_offset, "error": p.error}
        for p in parked
    ]


def _parked_detail(parked: Sequence[Position]) -> str:
    named = "; ".join(
        f"group {p.group} topic {p.topic} partition {p.partition} at offset {p.next_offset}" for p in parked
    )
    return f"consumer partition parked ({named}); see `smits consumer resume`"
