"""Trace context across HTTP and Kafka (W3C `traceparent`), and OpenTelemetry when switched on.

The `traceparent` header travels from `POST /v1/triggers` (or the producer's own header) through
`triggers`, `triggers.accepted` and `reviews.events` to the webhook, whether or not OpenTelemetry runs.
OpenTelemetry is off unless the standard variables ask for it: `OTEL_TRACES_EXPORTER` (`otlp` or
`console`) or an `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`, and `OTEL_SDK_DISABLED` is not `true`.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI

TRACEPARENT = "traceparent"
_FORMAT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def trace_id_of(traceparent: str | None) -> str | None:
    match = _FORMAT.match(traceparent or "")
    if match is None or match.group(1) == "0" * 32:
        return None
    return match.group(1)


def child_of(traceparent: str | None) -> str:
    """A `traceparent` in the same trace with a new span id, or a new trace when there is none."""
    trace_id = trace_id_of(traceparent) or secrets.token_hex(16)
    return f"00-{trace_id}-{secrets.token_hex(8)}-01"


def from_headers(headers: Sequence[tuple[str, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() == TRACEPARENT:
            try:
                text = value.decode("ascii")
            except UnicodeDecodeError:
                return None
            return text if trace_id_of(text) else None
    return None


def otel_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return bool(exporter or endpoint)


_configured = False


def configure_otel(service: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Install a tracer provider with the exporter the environment names; True when tracing is on."""
    global _configured
    if not otel_enabled(environ):
        return False
    if _configured:
        return True
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # endpoint, headers, timeout from the OTEL_EXPORTER_OTLP_* variables
    name = environ.get("OTEL_SERVICE_NAME") or f"smits-{service}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _configured = True
    return True


def shutdown_otel() -> None:
    if _configured:
        from opentelemetry import trace

        provider: Any = trace.get_tracer_provider()
        provider.shutdown()  # flushes the batch processor


def instrument(app: FastAPI) -> None:
    if _configured:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, excluded_urls="/healthz,/readyz,/metrics")


@contextmanager
def span(name: str, traceparent: str | None = None, **attributes: Any) -> Iterator[None]:
    """A span under `traceparent` when OpenTelemetry is on; nothing otherwise."""
    if not _configured:
        yield
        return
    from opentelemetry import trace
    from opentelemetry.propagate import extract

    context = extract({TRACEPARENT: traceparent}) if traceparent else None
    with trace.get_tracer("smits").start_as_current_span(name, context=context, attributes=attributes):
        yield


def current_traceparent(fallback: str | None) -> str:
    """The active span's `traceparent` when OpenTelemetry is on, else a child of `fallback`."""
    if _configured:
        from opentelemetry.propagate import inject

        carrier: dict[str, str] = {}
        inject(carrier)
        if trace_id_of(carrier.get(TRACEPARENT)):
            return carrier[TRACEPARENT]
    return child_of(fallback)
