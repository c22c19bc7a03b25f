"""Arbitrary bytes and headers never crash the parser: every input is a trigger or a rejection."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings

from services.trigger_ingest.domain import Rejection, Trigger, parse_kafka
from tests.support.strategies import Record, kafka_records

NOW = datetime(2026, 11, 22, tzinfo=UTC)


@settings(max_examples=500, deadline=None)
@given(record=kafka_records())
def test_parse_kafka_is_total(record: Record) -> None:
    value, headers = record
    parsed = parse_kafka(value, headers, received_at=NOW)
    assert isinstance(parsed, Trigger | Rejection)
    if isinstance(parsed, Rejection):
        assert parsed.kind
        assert parsed.message
