"""W3C trace context helpers and the OTEL_* switch (pure)."""

from __future__ import annotations

import pytest

from services.core.tracing import child_of, from_headers, otel_enabled, trace_id_of

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_child_keeps_the_trace_and_gets_a_new_span() -> None:
    child = child_of(PARENT)
    assert trace_id_of(child) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert child != PARENT
    assert trace_id_of(child_of(None)) is not None
    assert trace_id_of(child_of("garbage")) != trace_id_of(child_of("garbage"))


@pytest.mark.parametrize("value", ["", "00-xyz-00f067aa0ba902b7-01", "00-" + "0" * 32 + "-00f067aa0ba902b7-01"])
def test_invalid_traceparents_are_ignored(value: str) -> None:
    assert trace_id_of(value) is None


def test_headers_are_read_case_insensitively_and_safely() -> None:
    assert from_headers([("TraceParent", PARENT.encode())]) == PARENT
    assert from_headers([("traceparent", b"\xff")]) is None
    assert from_headers([]) is None


@pytest.mark.parametrize(
    ("environ", "enabled"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_opentelemetry_is_off_unless_the_standard_variables_ask(environ: dict[str, str], enabled: bool) -> None:
    assert otel_enabled(environ) is enabled
