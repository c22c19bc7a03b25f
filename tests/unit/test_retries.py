"""The decision after each webhook attempt (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notifier.retries import (
    RATE_MIN_PER_S,
    AttemptResult,
    DeliveryStatus,
    Step,
    SubscriptionPace,
    next_step,
    retry_after,
)
from services.notifier.sending import RESPONSE_KEEP, safe_text

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SCHEDULE = (0.0, 5.0, 300.0)
DAY = timedelta(days=1)


def outcome(status: int | None, retry: str | None = None) -> AttemptResult:
    return AttemptResult(
        status_code=status, duration_ms=10, response=None, error=None if status else "ConnectError", retry_after=retry
    )


def step(result: AttemptResult, attempts: int, failing_since: datetime | None = None) -> Step:
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
    assert step(outcome(status), 1).status == DeliveryStatus.DELIVERED


@pytest.mark.parametrize("status", [None, 301, 302, 400, 404, 429, 500, 503])
def test_anything_else_retries_on_the_schedule(status: int | None) -> None:
    result = step(outcome(status), 1)
    assert result.status == DeliveryStatus.PENDING
    assert result.next_attempt_at == NOW + timedelta(seconds=5)
    assert result.disable_reason is None


def test_the_schedule_runs_out() -> None:
    assert step(outcome(500), 2).next_attempt_at == NOW + timedelta(seconds=300)
    exhausted = step(outcome(500), 3)
    assert (exhausted.status, exhausted.next_attempt_at) == (DeliveryStatus.FAILED, None)


def test_410_fails_and_disables() -> None:
    result = step(outcome(410), 1)
    assert result.status == DeliveryStatus.FAILED
    assert result.disable_reason is not None


@pytest.mark.parametrize("status", [400, 404])
def test_a_status_named_permanent_fails_at_once_without_disabling(status: int) -> None:
    def after(result: AttemptResult) -> Step:
        return next_step(
            result,
            attempts=1,
            schedule=SCHEDULE,
            failing_since=None,
            now=NOW,
            disable_after=DAY,
            retry_after_max=DAY,
            jitter=0.0,
            permanent={400, 403, 404},
        )

    assert after(outcome(status)) == Step(DeliveryStatus.FAILED, None)
    assert after(outcome(500)).status is DeliveryStatus.PENDING
    assert step(outcome(status), 1).status is DeliveryStatus.PENDING  # a webhook's 4xx is retried


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


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("9" * 40, DAY),  # beyond any timedelta: capped before one is built
        ("99999999999999999999", DAY),
        ("²³", timedelta(0)),  # non-ASCII digits
        ("\xb2", timedelta(0)),
        ("-1", timedelta(0)),
        ("1e9", timedelta(0)),
        ("Thu, 01 Jan 2125 00:00:00 GMT", DAY),
        ("Fri, 31 Dec 99999 23:59:59 GMT", timedelta(0)),
        ("Sun, 22 Nov 2026 12:01:00", timedelta(0)),  # no zone
        ("9" * 65, timedelta(0)),  # longer than any delay or date
        (" 30 ", timedelta(seconds=30)),
        ("\x00", timedelta(0)),
    ],
)
def test_retry_after_from_a_hostile_receiver_never_raises_and_is_capped(value: str, expected: timedelta) -> None:
    assert retry_after(value, NOW, DAY) == expected


@given(st.text(max_size=80))
def test_retry_after_accepts_any_text(value: str) -> None:
    assert timedelta(0) <= retry_after(value, NOW, DAY) <= DAY


def test_a_pace_never_sleeps_and_spaces_sends() -> None:
    now = [100.0]
    pace = SubscriptionPace(2.0, clock=lambda: now[0])
    assert pace.wait() == 0
    pace.take()
    assert pace.wait() == pytest.approx(0.5)
    now[0] += 0.5
    assert pace.wait() == 0


@pytest.mark.parametrize("rate", [1e-9, 0.0, -5.0])
def test_a_pace_below_the_floor_waits_at_most_the_floor_interval(rate: float) -> None:
    now = [0.0]
    pace = SubscriptionPace(rate, clock=lambda: now[0])
    pace.take()
    assert pace.wait() == pytest.approx(1 / RATE_MIN_PER_S)


@given(st.binary(max_size=3000) | st.text(max_size=3000))
def test_safe_text_is_storable_anywhere(raw: bytes | str) -> None:
    text = safe_text(raw)
    assert "\x00" not in text
    assert len(text) <= RESPONSE_KEEP
    text.encode("utf-8")  # no lone surrogates
