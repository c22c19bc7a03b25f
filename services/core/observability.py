"""structlog JSON logging and the Prometheus metrics every service shares."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from prometheus_client import Counter, Gauge, Histogram

from services.core.settings import Settings

_SECRET_KEYS = frozenset({"secret", "api_key", "password", "authorization", "database_url", "token"})


def _redact(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Last line of defence: a field whose name says 'secret' never reaches a log line."""
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "***"
    return event_dict


_BOUND_VALUES = (
    # asyncpg quotes the offending argument: "invalid input for query argument $1: 'whsec_...' (...)"
    (re.compile(r"(query argument \$\d+:)[^\n]*"), r"\1 [value hidden]"),
    # SQLAlchemy's parameter list, should an engine without `hide_parameters` ever raise
    (re.compile(r"^\[parameters: [^\n]*", re.MULTILINE), "[parameters hidden]"),
    # PostgreSQL's DETAIL and HINT quote row values: "Failing row contains (..., whsec_...)", "Key (x)=(...)"
    (re.compile(r"^(\s*(?:DETAIL|HINT):)[^\n]*", re.MULTILINE), r"\1 [hidden: may quote row values]"),
)


def scrub(text: str) -> str:
    """`text` without the bound values a database error may quote."""
    for pattern, replacement in _BOUND_VALUES:
        text = pattern.sub(replacement, text)
    return text


def _scrub(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Runs after exceptions are rendered to text: no bound parameter reaches a log line (class of
    secrets: a statement binding a webhook secret fails, its error is logged)."""
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = scrub(value)
    return event_dict


def configure_logging(settings: Settings) -> None:
    """structlog for our loggers; the standard library's (uvicorn, SQLAlchemy, aiokafka) through the same
    redacting, scrubbing renderer."""
    level = logging.getLevelNamesMapping()[settings.log_level.upper()]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    safe = [_redact, structlog.processors.format_exc_info, _scrub, renderer]
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level, stamp, *safe],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name, stamp],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *safe],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(level, logging.WARNING))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger


HTTP_REQUESTS = Counter("smits_http_requests_total", "HTTP requests handled", ["method", "route", "status"])
HTTP_LATENCY = Histogram("smits_http_request_duration_seconds", "HTTP request latency", ["method", "route"])
TRIGGERS = Counter("smits_triggers_total", "Trigger events by outcome and category", ["outcome", "category"])
BATCHES = Counter("smits_consumer_batches_total", "Kafka batches committed", ["consumer"])
BATCH_SECONDS = Histogram("smits_consumer_batch_duration_seconds", "Batch handling time", ["consumer"])
OUTBOX_PUBLISHED = Counter("smits_outbox_published_total", "Outbox rows published", ["outbox"])
OUTBOX_BACKLOG = Gauge("smits_outbox_backlog", "Outbox rows waiting to be published", ["outbox"])
OUTBOX_PARKED = Gauge(
    "smits_outbox_parked_records", "Outbox rows Kafka refused for good, parked for an operator", ["outbox"]
)
CONSUMER_LAG = Gauge(
    "kafka_consumergroup_lag",
    "Records not yet consumed (high watermark - position)",
    ["consumergroup", "topic", "partition"],
)
PARKED_PARTITIONS = Gauge(
    "smits_consumer_parked_partitions",
    "1 while a partition is parked at a record that keeps failing (see `smits consumer resume`)",
    ["group", "topic", "partition"],
)
REVIEWS = Counter("smits_reviews_events_total", "Review domain events emitted", ["type"])
DELIVERIES = Counter("smits_webhook_deliveries_total", "Webhook delivery attempts by outcome", ["outcome"])
MAILS = Counter("smits_mail_deliveries_total", "E-mail delivery attempts by outcome", ["outcome"])
