"""The TriggerAccepted contract refuses what the engine could not store or compute with, and ingest publishes it
byte for byte as the model serialises it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.contracts.accepted import TriggerAcceptedV1, _no_nul_inside, _no_nul_inside_slowly, accepted_json
from services.contracts.triggers import Category, event_type
from services.trigger_ingest.domain import STRUCTURED_JSON, Trigger, parse_kafka
from tests.support.schema_instances import instances

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
STRUCTURED = ("content-type", STRUCTURED_JSON.encode())
NAMES = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=40)
TIMES = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(2199, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]),
)

VALID: dict[str, Any] = {
    "source": "/s",
    "id": "1",
    "type": "smits.trigger.goal_change.v1",
    "category": "goal_change",
    "severity": "low",
    "subject": "bu",
    "occurred_at": "2026-01-01T00:00:00Z",
    "received_at": "2026-01-01T00:00:00Z",
    "data": {"n": 36893488147419103233},
}


def test_a_valid_event_passes_even_with_a_big_integer_in_data() -> None:
    assert TriggerAcceptedV1.model_validate(VALID).data["n"] == 36893488147419103233


@pytest.mark.parametrize(
    "change",
    [
        {"subject": "b\x00u"},
        {"id": "x" * 501},
        {"data": {"k": "v\x00"}},
        {"data": {"k\x00": 1}},
        {"data": {"n": 2**70, "k": ["\x00"]}},  # too big for orjson: the stdlib looks for NUL
        {"data": {"k": "\ud800"}},
        {"occurred_at": "0403-01-01T00:00:00Z"},
        {"received_at": "2026-01-01T00:00:00"},
        {"trace_id": "not-hex"},
    ],
)
def test_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TriggerAcceptedV1.model_validate({**VALID, **change})


TEXT = st.text() | st.text(st.sampled_from("a\x00\ud800\\u0é"), max_size=8)
"""Any text, and text made of what matters: NUL, a lone surrogate, a backslash before `u0`."""
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(TEXT, JSON, max_size=6))
def test_data_is_refused_exactly_when_the_stdlib_finds_nul_or_a_lone_surrogate(data: dict[str, Any]) -> None:
    try:
        _no_nul_inside_slowly(data)
        expected = None
    except ValueError as exc:
        expected = str(exc)
    try:
        _no_nul_inside(data)
        found = None
    except ValueError as exc:
        found = str(exc)
    assert found == expected


@pytest.mark.parametrize("category", list(Category))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_ingest_publishes_exactly_what_the_model_would(category: Category, data: st.DataObject) -> None:
    """`accepted_json` skips building the model: its bytes must be the model's own, for any trigger ingest takes."""
    schema = json.loads((SCHEMAS / f"{event_type(category)}.json").read_text())
    attributes = {
        "specversion": "1.0",
        "id": data.draw(NAMES, label="id"),
        "source": data.draw(NAMES, label="source"),
        "subject": data.draw(NAMES, label="subject"),
        "type": event_type(category),
        "time": data.draw(TIMES, label="time").isoformat(),
        "data": data.draw(instances(schema), label="data"),
    }
    received_at = data.draw(TIMES, label="received_at").astimezone(UTC)
    trigger = parse_kafka(orjson.dumps(attributes), [STRUCTURED], received_at=received_at)
    assert isinstance(trigger, Trigger), trigger
    trace_id = data.draw(st.none() | st.text("0123456789abcdef", min_size=32, max_size=32), label="trace_id")
    fields: dict[str, Any] = {
        "source": trigger.source,
        "id": trigger.id,
        "type": trigger.type,
        "category": trigger.category,
        "severity": trigger.severity,
        "subject": trigger.scope,
        "occurred_at": trigger.occurred_at,
        "received_at": received_at,
        "trace_id": trace_id,
    }
    published = accepted_json(**fields, data_json=trigger.data_json)
    assert published == orjson.dumps(TriggerAcceptedV1(**fields, data=trigger.data).model_dump(mode="json"))
    assert TriggerAcceptedV1.model_validate_json(published).data == trigger.data
