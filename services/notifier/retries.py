"""What happens after a webhook attempt (pure), and the per-subscription rate limiter."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Outcome:
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
    status: str
    next_attempt_at: datetime | None
    disable_reason: str | None = None


def next_step(
    outcome: Outcome,
    *,
    attempts: int,
    schedule: tuple[float, ...],
    failing_since: datetime | None,
    now: datetime,
    disable_after: timedelta,
    retry_after_max: timedelta,
    jitter: float | None = None,
) -> Step:
    """Only 2xx succeeds. 410 fails the delivery and disables the endpoint; otherwise retry on the schedule
    (the `attempts`-th delay, up to 10% jitter, or `Retry-After` when longer) until it is exhausted; an
    endpoint failing for `disable_after` without a success is disabled."""
    if outcome.ok:
        return Step(DELIVERED, None)
    if outcome.status_code == 410:
        return Step(FAILED, None, "endpoint answered 410 Gone")
    reason = None
    if failing_since is not None and now - failing_since >= disable_after:
        reason = f"failing without a success since {failing_since.isoformat()}"
    if attempts >= len(schedule):
        return Step(FAILED, None, reason)
    spread = random.uniform(0, 0.1) if jitter is None else jitter
    delay = timedelta(seconds=schedule[attempts] * (1 + spread))
    wait = retry_after(outcome.retry_after, now, retry_after_max)
    return Step(PENDING, now + max(delay, wait), reason)


def retry_after(value: str | None, now: datetime, cap: timedelta) -> timedelta:
    """`Retry-After` as delay-seconds or an HTTP date; unparseable or absent means no extra wait."""
    if not value:
        return timedelta(0)
    value = value.strip()
    if value.isdigit():
        return min(timedelta(seconds=int(value)), cap)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return timedelta(0)
    if when.tzinfo is None:
        return timedelta(0)
    return min(max(when - now, timedelta(0)), cap)


class RateLimiter:
    """At most `rate` acquisitions per second, evenly spaced (a token bucket holding one token)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._next = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._next > now:
                await asyncio.sleep(self._next - now)
            self._next = max(self._next, now) + 1 / self.rate
