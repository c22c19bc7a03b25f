"""Fixtures on real infrastructure. Unit tests (tests/unit) need none of them."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import uuid
from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest

from services.core.cli import alembic_config
from services.core.db import UnitOfWork, create_engine
from services.core.kafka import create_topics
from services.core.settings import Settings
from tests.support import infra

FAULTS = Path(__file__).parent / "faults"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fault scenarios first: on pytest-xdist workers (make test) they are the longest file, run by one worker
    (they share one dedicated Kafka and Postgres, killed and restarted), so they start at once."""
    items.sort(key=lambda item: FAULTS not in item.path.parents)


_FILE_SECONDS: dict[str, float] = {}
_FILE_CPU: dict[str, float] = {}
_cpu_mark = 0.0


def _cpu_seconds() -> float:
    """CPU time of this process and of the child processes it has waited for (`smits` runs, browsers...)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def pytest_sessionstart(session: pytest.Session) -> None:
    global _cpu_mark
    _cpu_mark = _cpu_seconds()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Each report carries the CPU spent since the previous one (on an xdist worker: that worker's own)."""
    global _cpu_mark
    report = yield
    now = _cpu_seconds()
    report.cpu_s = now - _cpu_mark  # type: ignore[attr-defined]  # TestReport keeps extra attributes (and xdist too)
    _cpu_mark = now
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Time and CPU spent per test file (setup, call and teardown; on the xdist controller too), for the summary."""
    path = report.nodeid.split("::", 1)[0]
    _FILE_SECONDS[path] = _FILE_SECONDS.get(path, 0.0) + report.duration
    _FILE_CPU[path] = _FILE_CPU.get(path, 0.0) + float(getattr(report, "cpu_s", 0.0))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The slowest test files: with `--dist loadfile` a file is the unit a worker takes, so these set the wall time.
    CPU counts the worker and the processes it waited for (not Kafka, PostgreSQL or the provider); on a machine with
    few cores it, more than the seconds, is what the whole run's wall time is made of."""
    slowest = sorted(_FILE_SECONDS.items(), key=lambda item: -item[1])[:15]
    if len(_FILE_SECONDS) > 1:
        terminalreporter.write_sep("-", "slowest test files (seconds, CPU seconds)")
        for path, seconds in slowest:
            terminalreporter.write_line(f"{seconds:8.1f} {_FILE_CPU.get(path, 0.0):8.1f}  {path}")
        terminalreporter.write_line(
            f"{sum(_FILE_SECONDS.values()):8.1f} {sum(_FILE_CPU.values()):8.1f}  all {len(_FILE_SECONDS)} files"
        )


@pytest.fixture(scope="session")
def pg_server() -> str:
    return infra.postgres_url()


@pytest.fixture(scope="session")
def kafka() -> str:
    return infra.kafka_bootstrap()


@pytest.fixture(scope="session")
def oidc_issuer() -> str:
    """Issuer URL of the real OpenID Connect provider (deploy/oidc/oidc.sh), e.g. http://127.0.0.1:28080/smits."""
    return infra.oidc_issuer()


@pytest.fixture(scope="session")
async def pg_template(pg_server: str) -> AsyncIterator[str]:
    """A database migrated to head once per run; each test clones it (CREATE DATABASE ... TEMPLATE)."""
    from alembic import command

    await infra.recreate_template(pg_server)
    url = infra.with_database(pg_server, infra.TEMPLATE_DB)
    await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
    yield infra.TEMPLATE_DB
    await infra.drop_database(url)


@pytest.fixture
async def database_url(pg_server: str, pg_template: str) -> AsyncIterator[str]:
    """The test's own database, a clone of the template, dropped when the test ends."""
    url = await infra.create_database(pg_server, template=pg_template)
    yield url
    await infra.drop_database(url)


@pytest.fixture
async def settings(database_url: str, kafka: str) -> AsyncIterator[Settings]:
    """Settings for one test: its own database and its own topic prefix, topics created (and deleted after)."""
    value = Settings(
        database_url=database_url,
        kafka_bootstrap=kafka,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        webhook_allow_cidrs=("127.0.0.0/8",),
        delivery_retry_schedule=(0.0, 0.2, 0.2, 0.2),
        consumer_fetch_timeout_ms=100,
        shutdown_grace_s=10.0,
    )
    await create_topics(value)
    yield value
    with contextlib.suppress(Exception):  # a test that stopped the broker on purpose leaves its topics
        await infra.delete_topics(kafka, value.topic_prefix)


@pytest.fixture
async def uow(database_url: str) -> AsyncIterator[UnitOfWork]:
    """A unit of work on the test's own database, for flow-level tests (no Kafka)."""
    engine = create_engine(database_url)
    try:
        yield UnitOfWork(engine)
    finally:
        await engine.dispose()
