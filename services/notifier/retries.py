"""What happens after a webhook attempt (pure): a delivery's states (`DeliveryStatus`), the next step after an
`AttemptResult`, and the per-subscription send pace (`SubscriptionPace`, the subscription's rate limit; the
HTTP API's per-caller limit is `core.limits.CallerTokenBuckets`)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum


class DeliveryStatus(StrEnum):
    """A delivery's state (the `status` column holds its value): pending until it is delivered or fails."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


RETRY_AFTER_MAX_CHARS = 64
"""A longer `Retry-After` is not a delay nor an HTTP date: ignored."""


@dataclass(kw_only=True, frozen=True, slots=True)
class AttemptResult:
    status_code: int | None
    duration_ms: int
    response: str | None
    error: str | None
    retry_after: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True, slots=True)
class Step:
    status: DeliveryStatus
    next_attempt_at: datetime | None
    disable_reason: str | None = None


def next_step(
    outcome: AttemptResult,
    *,
    attempts: int,
    schedule: tuple[float, ...],
    failing_since: datetime | None,
    now: datetime,
    disable_after: timedelta,
    retry_after_max: timedelta,
    jitter: float | None = None,
    permanent: Collection[int] = (),
) -> Step:
    """Only 2xx succeeds. 410 fails the delivery and disables the endpoint; a status in `permanent` (an answer
    the same request would get again) fails the delivery at once; otherwise retry on the schedule (the
    `attempts`-th delay, up to 10% jitter, or `Retry-After` when longer) until it is exhausted; an endpoint
    failing for `disable_after` without a success is disabled."""
    if outcome.ok:
        return Step(DeliveryStatus.DELIVERED, None)
    if outcome.status_code == 410:
        return Step(DeliveryStatus.FAILED, None, "endpoint answered 410 Gone")
    reason = None
    if failing_since is not None and now - failing_since >= disable_after:
        reason = f"failing without a success since {failing_since.isoformat()}"
    if attempts >= len(schedule) or outcome.status_code in permanent:
        return Step(DeliveryStatus.FAILED, None, reason)
    spread = random.uniform(0, 0.1) if jitter is None else jitter
    delay = timedelta(seconds=schedule[attempts] * (1 + spread))
    wait = retry_after(outcome.retry_after, now, retry_after_max)
    return Step(DeliveryStatus.PENDING, now + max(delay, wait), reason)


def retry_after(value: str | None, now: datetime, cap: timedelta) -> timedelta:
    """`Retry-After` as delay-seconds or an HTTP date, never more than `cap`; anything else (negative,
    non-ASCII, absurdly long, an impossible date) means no extra wait. The value comes from the receiver:
    no input may raise here, or its attempt could not be recorded."""
    if not value or len(value) > RETRY_AFTER_MAX_CHARS or not value.isascii():
        return timedelta(0)
    value = value.strip()
    if value.isdigit():  # ASCII digits only (checked above); compared before any timedelta can overflow
        return timedelta(seconds=min(int(value), cap.total_seconds()))
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            return timedelta(0)
        return min(max(when - now, timedelta(0)), cap)
    except (TypeError, ValueError, OverflowError, IndexError):
        return timedelta(0)


RATE_MIN_PER_S = 0.01
"""Slowest accepted `rate_limit_per_s`: one webhook every 100 s."""
RATE_MAX_PER_S = 1000.0


class SubscriptionPace:
    """At most `rate` sends per second, evenly spaced (a token bucket holding one token). It never sleeps:
    `wait` says how long a subscription must wait, and the worker claims nothing of it meanwhile, so a
    slow subscription is deferred instead of holding a slot. The rate is clamped to the accepted bounds
    (a row written before they were enforced may be outside them)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._interval = 1 / min(max(rate, RATE_MIN_PER_S), RATE_MAX_PER_S)
        self._clock = clock
        self._next = clock()

    def wait(self) -> float:
        """Seconds until the next send is allowed (0: now)."""
        return max(0.0, self._next - self._clock())

    def take(self) -> None:
        """Count one send."""
        self._next = max(self._next, self._clock()) + self._interval
