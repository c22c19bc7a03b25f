"""The composition root: the three services, imported statically, and the commands that need them.

The `smits` console script starts here. `services.core` never imports a service, and services never import
each other; this module is the one place that knows them all, so mypy follows every call from the command
line into each service. The imports are plain `from ... import` statements inside the functions that need them
(not strings): a command that runs no service (`smits keys create`, a refused setting) does not load them all,
and starts in a fraction of the time.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from services.core import cli

if TYPE_CHECKING:
    from services.core.runtime import Builder


def _ingest() -> Builder:
    from services.trigger_ingest.wiring import build

    return build


def _engine() -> Builder:
    from services.strategy_engine.wiring import build

    return build


def _notifier() -> Builder:
    from services.notifier.wiring import build

    return build


def _console() -> Builder:
    from services.console.wiring import build

    return build


LOADERS: dict[str, Callable[[], Builder]] = {
    "ingest": _ingest,
    "engine": _engine,
    "notifier": _notifier,
    "console": _console,  # pages on the API of the same process: served with `all`
}
"""Every service by name, in start order; each imported only when it is to run."""


def selected(names: list[str]) -> dict[str, Builder]:
    """The services named, in the order of `LOADERS`."""
    return {name: load() for name, load in LOADERS.items() if name in names}


class Which(StrEnum):
    INGEST = "ingest"
    ENGINE = "engine"
    NOTIFIER = "notifier"
    ALL = "all"


@cli.app.command()
def serve(
    which: Annotated[Which, typer.Argument(help="service to run; all = the three and the console in one process")],
    host: Annotated[str | None, typer.Option(help="listen address (default SMITS_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (default SMITS_PORT)")] = None,
) -> None:
    """Run a service's HTTP API and its Kafka workers until SIGTERM/SIGINT."""
    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = cli.settings_of(**overrides)
    chosen = selected(list(LOADERS) if which is Which.ALL else [which.value])
    sys.exit(asyncio.run(cli.serve_services(settings, chosen)))


dlq_app = typer.Typer(no_args_is_help=True, help="Dead-lettered triggers")
cli.app.add_typer(dlq_app, name="dlq")


@dlq_app.command("replay")
def dlq_replay(
    since: Annotated[datetime | None, typer.Option(help="only dead letters recorded at or after this time")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="at most this many")] = None,
) -> None:
    """Re-publish dead-lettered triggers to the input topic (original key, value and headers)."""
    from services.trigger_ingest.replay import replay_dead_letters

    settings = cli.settings_of()
    when = since.replace(tzinfo=UTC) if since is not None and since.tzinfo is None else since
    count = asyncio.run(replay_dead_letters(settings, since=when, limit=limit))
    typer.echo(f"replayed {count} dead-lettered trigger(s) to {settings.topic('triggers')}")


def main() -> None:
    """The console script (`smits`)."""
    cli.main()
