"""Parsing and validation of trigger CloudEvents: pure, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent

from services.contracts.triggers import Category, Severity
from services.trigger_ingest.domain import (
    MAX_EVENT_BYTES,
    Rejection,
    Trigger,
    default_severity,
    parse_kafka,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
REGULATION = {
    "regulation_id": "DORA",
    "title": "DORA",
    "jurisdiction": "EU",
    "issuing_body": "EP",
    "change_type": "new",
    "effective_date": "2027-01-17",
}
STRUCTURED = [("content-type", b"application/cloudevents+json")]


def structured(**overrides: Any) -> bytes:
    event = {
        "specversion": "1.0",
        "id": "1",
        "source": "/s",
        "type": "smits.trigger.regulation_update.v1",
        "subject": "bu-1",
        "data": REGULATION,
    }
    event.update(overrides)
    return orjson.dumps({k: v for k, v in event.items() if v is not None})


def test_structured_event_is_accepted_with_scope_and_default_severity() -> None:
    parsed = parse_kafka(structured(), STRUCTURED, received_at=NOW)
    assert isinstance(parsed, Trigger)
    assert (parsed.source, parsed.id, parsed.scope) == ("/s", "1", "bu-1")
    assert parsed.category is Category.REGULATION_UPDATE
    assert parsed.severity is Severity.HIGH  # effective within 90 days of NOW
    assert parsed.occurred_at == NOW  # no `time`: received time stands in
    assert parsed.data["effective_date"] == "2027-01-17"


def test_sdk_built_binary_and_structured_events_parse_identically() -> None:
    event = CloudEvent(
        attributes={
            "id": "9",
            "source": "/erp",
            "type": "smits.trigger.regulation_update.v1",
            "subject": "bu-2",
            "datacontenttype": "application/json",
            "time": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        },
        data=REGULATION,
    )
    results = []
    for message in (ce_kafka.to_binary_event(event), ce_kafka.to_structured_event(event)):
        results.append(parse_kafka(message.value, list(message.headers.items()), received_at=NOW))
    assert all(isinstance(result, Trigger) for result in results)
    assert results[0] == results[1]
    assert isinstance(results[0], Trigger)
    assert results[0].occurred_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "headers", "kind", "field"),
    [
        (b"not json", STRUCTURED, "InvalidJson", None),
        (structured(id=None), STRUCTURED, "MissingAttribute", "id"),
        (structured(type="smits.trigger.weather.v1"), STRUCTURED, "UnknownType", "type"),
        (structured(specversion="0.3"), STRUCTURED, "UnsupportedSpecVersion", "specversion"),
        (structured(data={**REGULATION, "effective_date": 12}), STRUCTURED, "InvalidData", "data.effective_date"),
        (structured(data={**REGULATION, "surprise": 1}), STRUCTURED, "InvalidData", "data.surprise"),
        (structured(time="yesterday"), STRUCTURED, "InvalidAttribute", "time"),
        (structured(severity="apocalyptic"), STRUCTURED, "InvalidAttribute", "severity"),
        (b"x" * (MAX_EVENT_BYTES + 1), STRUCTURED, "EventTooLarge", None),
        (
            orjson.dumps(REGULATION),
            [("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"smits.trigger.regulation_update.v1")],
            "MissingAttribute",
            "specversion",
        ),
        (orjson.dumps(REGULATION), [("ce_specversion", b"1.0"), ("ce_id", b"\xff\xfe")], "InvalidHeader", "ce_id"),
        (b"[]", STRUCTURED, "InvalidEvent", None),
        (None, STRUCTURED, "EmptyValue", None),
    ],
)
def test_bad_inputs_are_rejected_with_a_reason(
    value: bytes | None, headers: list[tuple[str, bytes]], kind: str, field: str | None
) -> None:
    parsed = parse_kafka(value, headers, received_at=NOW)
    assert isinstance(parsed, Rejection)
    assert (parsed.kind, parsed.field) == (kind, field)
    assert parsed.message


def test_severity_attribute_overrides_the_category_default() -> None:
    parsed = parse_kafka(structured(severity="critical"), STRUCTURED, received_at=NOW)
    assert isinstance(parsed, Trigger)
    assert parsed.severity is Severity.CRITICAL


@pytest.mark.parametrize(
    ("category", "data", "expected"),
    [
        (Category.REGULATION_UPDATE, {"effective_date": "2027-06-01"}, Severity.MEDIUM),
        (Category.REGULATION_UPDATE, {"effective_date": "2026-12-01"}, Severity.HIGH),
        (Category.BUDGET_CHANGE, {"delta_percent": "-12.5"}, Severity.HIGH),
        (Category.BUDGET_CHANGE, {"delta_percent": "3"}, Severity.MEDIUM),
        (Category.AUDIT_FINDING, {"finding_severity": "critical"}, Severity.CRITICAL),
        (Category.VENDOR_STRATEGY_CHANGE, {"critical_service_affected": True}, Severity.HIGH),
        (Category.VENDOR_STRATEGY_CHANGE, {}, Severity.MEDIUM),
        (Category.MERGER_ACQUISITION, {}, Severity.HIGH),
        (Category.CUSTOMER_FEEDBACK, {}, Severity.LOW),
        (Category.GOAL_CHANGE, {}, Severity.MEDIUM),
        (Category.BUSINESS_OPPORTUNITY, {}, Severity.MEDIUM),
    ],
)
def test_default_severity_per_category(category: Category, data: dict[str, Any], expected: Severity) -> None:
    assert default_severity(category, data, NOW) is expected


@pytest.mark.parametrize("when", ["0403-02-21T01:10:18Z", "9999-12-31T23:59:59Z", "2026-11-20T09:00:00"])
def test_event_times_outside_1970_to_2200_or_without_offset_are_rejected(when: str) -> None:
    parsed = parse_kafka(structured(time=when), STRUCTURED, received_at=NOW)
    assert isinstance(parsed, Rejection)
    assert parsed.field == "time"
