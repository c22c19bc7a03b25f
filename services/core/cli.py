"""The `smits` command line: the commands that need no service. The composition root (`services/app.py`)
adds `serve` and `dlq replay`, which do, and is where the console script starts."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.identity.cli import audit_app, audited, keys_app, org_units_app, users_app
from services.core.observability import configure_logging, get_logger
from services.core.settings import ConfigurationError, Settings, load_settings

if TYPE_CHECKING:  # what only `serve`, `migrate` or `consumer` needs is imported there: a command starts in a blink
    import uvicorn
    from alembic.config import Config

    from services.core.positions import Position
    from services.core.runtime import Builder

app = typer.Typer(no_args_is_help=True, add_completion=False, help="smits: strategy review triggers")
topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics")
schemas_app = typer.Typer(no_args_is_help=True, help="JSON Schemas of the event contracts")
outbox_app = typer.Typer(no_args_is_help=True, help="Outbox records Kafka refused for good (parked)")
consumer_app = typer.Typer(no_args_is_help=True, help="Kafka consumers (parked partitions)")
app.add_typer(topics_app, name="topics")
app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")
app.add_typer(org_units_app, name="org-units")
app.add_typer(audit_app, name="audit")
app.add_typer(schemas_app, name="schemas")
app.add_typer(outbox_app, name="outbox")
app.add_typer(consumer_app, name="consumer")

log = get_logger("smits.cli")
T = TypeVar("T")
MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def settings_of(**overrides: object) -> Settings:
    """The process's settings (invalid ones raise `ConfigurationError`, which `main` turns into exit 2)."""
    settings = load_settings(**overrides)
    configure_logging(settings)
    return settings


def alembic_config(database_url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = database_url
    return config


@app.command()
def migrate() -> None:
    """Apply database migrations (alembic upgrade head) to SMITS_DATABASE_URL."""
    from alembic import command

    settings = settings_of()
    command.upgrade(alembic_config(settings.database_url.get_secret_value()), "head")
    log.info("database migrated")


async def serve_services(settings: Settings, services: Mapping[str, Builder]) -> int:
    """Run `services` (name → build function) with their HTTP API until SIGTERM/SIGINT; the exit code."""
    from services.core.runtime import StartupAborted
    from services.core.tracing import configure_otel, shutdown_otel

    names = list(services)

    if settings.auth_disabled:
        log.warning("AUTHENTICATION IS DISABLED (SMITS_AUTH_DISABLED=true): local demo only, never in production")
    stop = asyncio.Event()
    _stop_on_signals(stop)  # first thing: a SIGTERM during startup stops cleanly too
    if configure_otel("-".join(names) if len(names) == 1 else "all"):
        log.info("OpenTelemetry tracing on (OTEL_* variables)")
    try:
        return await _serve_until_stopped(settings, services, stop)
    except ConfigurationError as exc:
        log.error("cannot start: configuration error", error=str(exc))
        return 2
    except StartupAborted:
        log.info("stopped before startup completed")
        return 0
    finally:
        shutdown_otel()


async def _serve_until_stopped(settings: Settings, services: Mapping[str, Builder], stop: asyncio.Event) -> int:
    import uvicorn

    from services.core.runtime import build_app, running

    async with running(settings, services, stop=stop) as (runtime, units):
        # What start-up made (modules, settings, compiled policies, pools) lives as long as the process: frozen, the
        # collector stops walking it (ingest: garbage collection 11 -> 5 us of CPU per record).
        gc.collect()
        gc.freeze()
        config = uvicorn.Config(
            build_app(runtime, units),
            host=settings.host,
            port=settings.port,
            lifespan="off",
            log_config=None,
            access_log=False,
        )
        server = uvicorn.Server(config)
        stopper = asyncio.create_task(_exit_when_stopped(runtime.stop, server))
        log.info("listening", host=settings.host, port=settings.port, services=list(services))
        await server.serve()
        stopper.cancel()
    return 1 if runtime.failed else 0


def _stop_on_signals(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT set `stop`. While serving, uvicorn handles them itself, then restores these handlers
    and re-raises the signal into them; without them the default action would kill the process before
    the workers drain."""
    loop = asyncio.get_running_loop()

    def drain(signum: int, _frame: object) -> None:
        loop.call_soon_threadsafe(stop.set)
        log.info("draining", signal=signal.Signals(signum).name)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, drain)


async def _exit_when_stopped(stop: asyncio.Event, server: uvicorn.Server) -> None:
    await stop.wait()
    server.should_exit = True


@topics_app.command("create")
def topics_create() -> None:
    """Create the contract's topics (partitions and replication from settings)."""
    from services.core.kafka import create_topics

    settings = settings_of()
    created = asyncio.run(create_topics(settings))
    for name in created:
        typer.echo(f"created {name}")
    typer.echo(f"{len(created)} created; topics ready under prefix {settings.topic_prefix!r}")


@schemas_app.command("export")
def schemas_export(
    directory: Annotated[Path, typer.Option(help="where to write the files")] = Path("schemas"),
) -> None:
    """Write the JSON Schemas of the trigger categories and inter-service events."""
    from services.contracts.schemas import export

    for path in export(directory):
        typer.echo(f"wrote {path}")


@consumer_app.command("resume")
def consumer_resume(
    group: Annotated[str, typer.Option(help="Kafka consumer group, with the topic prefix, as /readyz names it")],
    topic: Annotated[str, typer.Option(help="Kafka topic, with the topic prefix, as /readyz names it")],
    partition: Annotated[int, typer.Option(min=0, help="the parked partition")],
    skip_offset: Annotated[
        bool, typer.Option("--skip-offset", help="move past the failing record instead of retrying it")
    ] = False,
) -> None:
    """Resume a parked partition: its consumer retries the failing record, or with --skip-offset moves past
    it (logged; ingest dead-letters it). The running consumer picks the request up within a few seconds."""
    found = asyncio.run(_resume(settings_of(), group, topic, partition, skip_offset))
    if isinstance(found, list):
        parked = ", ".join(f"{p.group} {p.topic} {p.partition} at offset {p.next_offset}" for p in found) or "none"
        typer.echo(f"group {group} topic {topic} partition {partition} is not parked; parked now: {parked}", err=True)
        raise typer.Exit(1)
    action = "skipping" if skip_offset else "retrying"
    log.warning(
        "parked partition resumed by an operator",
        group=group,
        topic=topic,
        partition=partition,
        offset=found.next_offset,
        skip=skip_offset,
        error=found.error,
    )
    typer.echo(f"resumed group {group} topic {topic} partition {partition}: {action} offset {found.next_offset}")


async def _resume(settings: Settings, group: str, topic: str, partition: int, skip: bool) -> Position | list[Position]:
    """The parked position that was resumed, or (when that partition is not parked) every parked one."""
    from services.core import positions

    async def resume(session: AsyncSession) -> Position | list[Position]:
        now = datetime.now(UTC)
        found = await positions.resume(session, group=group, topic=topic, partition=partition, skip=skip, now=now)
        if found is None:
            return await positions.parked(session)
        await audited(
            session,
            action="consumer.resume",
            target=f"partition:{group}/{topic}/{partition}",
            offset=found.next_offset,
            skip=skip,
            error=found.error,
        )
        return found

    return await in_transaction(settings, resume)


@outbox_app.command("parked")
def outbox_parked(
    limit: Annotated[int, typer.Option(min=1, help="at most this many")] = 100,
) -> None:
    """List parked outbox records (oldest first) with the error Kafka gave."""
    from services.core import parking

    records = asyncio.run(in_transaction(settings_of(), lambda session: parking.list_parked(session, limit=limit)))
    for record in records:
        typer.echo(
            f"{record.id}\t{record.outbox}#{record.outbox_id}\t{record.topic}\t{record.size} bytes\t"
            f"{record.parked_at.isoformat()}\t{record.error}"
        )
    typer.echo(f"{len(records)} parked record(s)")


@outbox_app.command("retry")
def outbox_retry(parked_id: Annotated[int, typer.Argument(help="id from `smits outbox parked`")]) -> None:
    """Put a parked record back into its outbox, in its original place; the relay publishes it again."""
    from services.core import parking

    async def retry(session: AsyncSession) -> parking.Parked | None:
        found = await parking.retry(session, parked_id)
        if found is not None:
            await audited(session, action="outbox.retry", target=f"parked:{parked_id}", topic=found.topic)
        return found

    record = asyncio.run(in_transaction(settings_of(), retry))
    if record is None:
        typer.echo(f"no parked record {parked_id}", err=True)
        raise typer.Exit(1)
    log.info("parked outbox record retried", id=parked_id, outbox=record.outbox, outbox_id=record.outbox_id)
    typer.echo(f"parked record {parked_id} is back in {record.outbox} as #{record.outbox_id}")


@outbox_app.command("drop")
def outbox_drop(parked_id: Annotated[int, typer.Argument(help="id from `smits outbox parked`")]) -> None:
    """Delete a parked record for good (it is never published)."""
    from services.core import parking

    async def drop(session: AsyncSession) -> parking.Parked | None:
        found = await parking.drop(session, parked_id)
        if found is not None:
            await audited(session, action="outbox.drop", target=f"parked:{parked_id}", topic=found.topic)
        return found

    record = asyncio.run(in_transaction(settings_of(), drop))
    if record is None:
        typer.echo(f"no parked record {parked_id}", err=True)
        raise typer.Exit(1)
    log.warning("parked outbox record dropped", id=parked_id, outbox=record.outbox, topic=record.topic)
    typer.echo(f"parked record {parked_id} dropped ({record.outbox}#{record.outbox_id}, {record.topic})")


async def in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one transaction on SMITS_DATABASE_URL."""
    from services.core.db import UnitOfWork, create_engine

    engine = create_engine(settings.database_url.get_secret_value())
    try:
        async with UnitOfWork(engine).begin() as session:
            return await work(session)
    finally:
        await engine.dispose()


def main() -> None:
    """The console script: a configuration error, in any command, exits 2 naming the problem (no traceback)."""
    try:
        app()
    except ConfigurationError as exc:
        typer.echo(f"smits: configuration error: {exc}", err=True)
        sys.exit(2)
