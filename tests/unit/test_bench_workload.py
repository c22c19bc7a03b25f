"""The benchmark's workload is what BENCHMARKS.md says it is: shares of repeats and invalid records, and
records that ingest's own parser accepts or rejects accordingly."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from bench.workload import STRUCTURED, build, regulation
from services.trigger_ingest.domain import Rejection, parse_kafka


def test_shares_of_unique_repeated_and_invalid_records() -> None:
    workload = build(2000, run="t")
    assert (workload.unique, workload.duplicates, workload.invalid) == (1880, 100, 20)
    assert len(workload.records) == 2000
    ids = Counter(record.trigger_id for record in workload.records if record.trigger_id is not None)
    assert len(ids) == 1880
    assert sum(count - 1 for count in ids.values()) == 100


def test_valid_records_parse_and_invalid_ones_are_rejected() -> None:
    workload = build(700, run="t")
    now = datetime.now(UTC)
    outcomes: Counter[tuple[bool, bool]] = Counter()
    for record in workload.records:
        parsed = parse_kafka(record.value, tuple(STRUCTURED), received_at=now)
        outcomes[(record.trigger_id is None, isinstance(parsed, Rejection))] += 1
    assert outcomes == {(False, False): workload.unique + workload.duplicates, (True, True): workload.invalid}


def test_latency_triggers_correlate_on_their_regulation() -> None:
    at = datetime.now(UTC)
    first, again = regulation("t", 1, regulations=10, at=at), regulation("t", 11, regulations=10, at=at)
    assert first["data"]["regulation_id"] == again["data"]["regulation_id"]
    assert first["id"] != again["id"]
