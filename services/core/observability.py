"""structlog JSON logging and the Prometheus metrics every service shares."""

from __future__ import annotations

import logging
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


def configure_logging(settings: Settings) -> None:
    level = logging.getLevelNamesMapping()[settings.log_level.upper()]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr, format="%(name)s %(message)s")


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
