"""The per-caller token bucket (pure, with a fake clock)."""

from __future__ import annotations

import pytest

from services.core.limits import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_per_caller() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0, 0, 0]
    assert limiter.take("a") == pytest.approx(0.5)  # one token comes back every half second
    assert limiter.take("b") == 0  # callers are independent
    clock.now += 0.5
    assert limiter.take("a") == 0
    assert limiter.take("a") == pytest.approx(0.5)


def test_a_batch_costs_one_token_per_event_and_an_oversized_one_waits_for_a_full_bucket() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=10, burst=20, clock=clock)
    assert limiter.take("a", cost=15) == 0
    assert limiter.take("a", cost=10) == pytest.approx(0.5)
    clock.now += 2
    assert limiter.take("a", cost=500) == 0  # capped at the burst: allowed once the bucket is full
