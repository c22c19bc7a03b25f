"""The per-caller token bucket (pure, with a fake clock)."""

from __future__ import annotations

import pytest

from services.core.limits import CallerTokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_per_caller() -> None:
    clock = Clock()
    limiter = CallerTokenBuckets(rate=2, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a") == pytest.approx(0.5)  # one token comes back every half second
    assert limiter.take("b") == 0  # callers are independent
    clock.now += 0.5
    assert limiter.take("a") == 0
    assert limiter.take("a") == pytest.approx(0.5)


def test_a_batch_costs_one_token_per_event_and_an_oversized_one_waits_for_a_full_bucket() -> None:
    clock = Clock()
    limiter = CallerTokenBuckets(rate=10, burst=20, clock=clock)
    assert limiter.take("a", cost=15) == 0
    assert limiter.take("a", cost=10) == pytest.approx(0.5)
    clock.now += 2
    assert limiter.take("a", cost=500) == 0  # capped at the burst: allowed once the bucket is full
    assert limiter.take("a", cost=1) == pytest.approx((500 - 20 + 1) / 10)  # ... and paid for in full


def test_oversized_batches_cannot_beat_the_average_rate() -> None:
    clock = Clock()
    limiter = CallerTokenBuckets(rate=1, burst=10, clock=clock)
    admitted = 0
    while clock.now < 10_000:  # a client sending a 1000-event batch as soon as it may, for 10,000 s
        wait = limiter.take("a", cost=1000)
        if wait == 0:
            admitted += 1000
        clock.now += max(wait, 1.0)
    assert admitted <= 10_000 + 1000  # the rate (1/s) over the time, plus one batch on credit
