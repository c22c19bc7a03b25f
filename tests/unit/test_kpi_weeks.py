"""The KPI trend's weeks (pure): the last twelve ISO weeks, Monday 00:00 UTC to the next, the current one last."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise

from services.strategy_engine.kpis import weeks


def test_twelve_iso_weeks_end_with_the_current_one_across_a_year_boundary() -> None:
    span = weeks(datetime(2027, 1, 3, 23, 30, tzinfo=UTC))  # a Sunday in ISO week 2026-W53
    assert [w.label for w in span][-3:] == ["2026-W51", "2026-W52", "2026-W53"]
    assert span[-1].start == datetime(2026, 12, 28, tzinfo=UTC)
    assert span[0].start == datetime(2026, 10, 12, tzinfo=UTC)
    assert all(later.start == earlier.end for earlier, later in pairwise(span))
    assert all(w.end - w.start == timedelta(weeks=1) and w.start.weekday() == 0 for w in span)
    assert len(span) == 12


def test_the_week_is_taken_in_utc() -> None:
    monday_in_utc = datetime(2027, 1, 4, 0, 30, tzinfo=timezone(timedelta(hours=2)))  # Sunday 22:30 UTC
    assert weeks(monday_in_utc, 1)[0].label == "2026-W53"
