"""The decision after each webhook attempt (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.notifier.retries import DELIVERED, FAILED, PENDING, Outcome, Step, next_step, retry_after

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SCHEDULE = (0.0, 5.0, 300.0)
DAY = timedelta(days=1)


def outcome(status: int | None, retry: str | None = None) -> Outcome:
    return Outcome(status, 10, None, None if status else "ConnectError", retry)


def step(result: Outcome, attempts: int, failing_since: datetime | None = None) -> Step:
    return next_step(
        result,
        attempts=attempts,
        schedule=SCHEDULE,
        failing_since=failing_since,
        now=NOW,
        disable_after=timedelta(days=5),
        retry_after_max=DAY,
        jitter=0.0,
    )


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_any_2xx_delivers(status: int) -> None:
    assert step(outcome(status), 1).status == DELIVERED


@pytest.mark.parametrize("status", [None, 301, 302, 400, 404, 429, 500, 503])
def test_anything_else_retries_on_the_schedule(status: int | None) -> None:
    result = step(outcome(status), 1)
    assert result.status == PENDING
    assert result.next_attempt_at == NOW + timedelta(seconds=5)
    assert result.disable_reason is None


def test_the_schedule_runs_out() -> None:
    assert step(outcome(500), 2).next_attempt_at == NOW + timedelta(seconds=300)
    exhausted = step(outcome(500), 3)
    assert (exhausted.status, exhausted.next_attempt_at) == (FAILED, None)


def test_410_fails_and_disables() -> None:
    result = step(outcome(410), 1)
    assert result.status == FAILED
    assert result.disable_reason is not None


def test_retry_after_wins_when_longer_than_the_schedule() -> None:
    assert step(outcome(429, "120"), 1).next_attempt_at == NOW + timedelta(seconds=120)
    assert step(outcome(429, "1"), 1).next_attempt_at == NOW + timedelta(seconds=5)


def test_five_days_of_failure_disables() -> None:
    assert step(outcome(500), 1, failing_since=NOW - timedelta(days=5)).disable_reason
    assert step(outcome(500), 1, failing_since=NOW - timedelta(days=4)).disable_reason is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, timedelta(0)),
        ("", timedelta(0)),
        ("30", timedelta(seconds=30)),
        ("999999", DAY),
        ("Sun, 22 Nov 2026 12:01:00 GMT", timedelta(minutes=1)),
        ("Sun, 22 Nov 2026 11:00:00 GMT", timedelta(0)),
        ("soon", timedelta(0)),
    ],
)
def test_retry_after_parsing(value: str | None, expected: timedelta) -> None:
    assert retry_after(value, NOW, DAY) == expected
