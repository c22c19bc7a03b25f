"""No bound parameter reaches a log line (issue 12, class 4): a statement binding a webhook secret fails on
PostgreSQL and its error is logged by our logger and by the standard library's (as uvicorn does)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import structlog
from sqlalchemy import text

from services.core.db import UnitOfWork, create_engine
from services.core.observability import configure_logging, get_logger
from services.core.settings import Settings
from services.notifier.persistence import SubscriptionRow

SECRET = "whsec_" + "S3cr3tV4lue" * 3


async def _fail(engine_url: str, statement: str) -> Exception:
    engine = create_engine(engine_url)
    try:
        async with UnitOfWork(engine).begin() as session:
            if statement == "insert":  # the URL is too long for its column: the INSERT binding the secret fails
                session.add(
                    SubscriptionRow(
                        id=uuid.uuid4(), url="x" * 3000, secret=SECRET, event_types=[], created_at=datetime.now(UTC)
                    )
                )
            elif statement == "not-null":  # PostgreSQL's DETAIL quotes the failing row, secret included
                await session.execute(
                    text("INSERT INTO notifier_subscriptions (id, url, secret) VALUES (:id, NULL, :secret)"),
                    {"id": uuid.uuid4(), "secret": SECRET},
                )
            else:  # asyncpg quotes a value it cannot encode in its own message
                await session.execute(text("SELECT CAST(:value AS integer)"), {"value": SECRET})
    except Exception as exc:
        return exc
    finally:
        await engine.dispose()
    raise AssertionError("the statement did not fail")


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """`configure_logging` is process-wide (and writes to the captured stderr): undo it after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers, root.level = handlers, level


@pytest.mark.usefixtures("restored_logging")
@pytest.mark.parametrize("log_format", ["json", "console"])
@pytest.mark.parametrize("statement", ["insert", "cast", "not-null"])
async def test_a_failing_statement_that_binds_a_secret_never_logs_it(
    settings: Settings, capsys: pytest.CaptureFixture[str], statement: str, log_format: str
) -> None:
    configure_logging(settings.model_copy(update={"log_format": log_format}))
    error = await _fail(settings.database_url.get_secret_value(), statement)
    try:
        raise error
    except Exception:
        get_logger("tests").exception("unhandled error", error=str(error))
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    logs = capsys.readouterr().err
    assert SECRET not in logs  # never the values a statement bound ...
    assert "unhandled error" in logs
    assert "Exception in ASGI application" in logs
    assert type(error).__name__ in logs  # ... though the error itself is logged, by both loggers
