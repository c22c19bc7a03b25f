"""Which claimed deliveries may be sent now (pure: no I/O; the caller gives the times, in seconds of a monotonic
clock).

The delivery worker claims ahead of its senders, so a sender never waits for a database transaction: claimed
deliveries wait here, and the next one starts the moment a slot frees. Isolation rests on the slots:
- at most `concurrency` sends at once, and at most `per_subscription` of one subscription;
- the last `reserved` free slots go only to a subscription with nothing in flight, so slow receivers holding
  their slots (each at most its own cap) cannot keep every other subscriber waiting for one;
- beyond its slots a subscription may have only as many deliveries claimed and waiting as its sends will start
  within `ahead_s` (their lease must still cover the send then): none until one of its sends has finished, none
  while it is rate-limited, and fewer as its sends (finished, or still running) take longer. At most `ahead_max`
  per subscription and `2 * ahead_max` in all wait, so no single subscription takes every claim.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

SMOOTHING = 0.2
"""Weight of the newest send's duration in a subscription's running estimate."""


def reserved_slots(concurrency: int) -> int:
    """Slots only a subscription with nothing in flight may take."""
    return max(1, concurrency // 5)


@dataclass(slots=True)
class _Subscription:
    sending: dict[uuid.UUID, float] = field(default_factory=dict)
    """Deliveries being sent, with when each started."""
    waiting: int = 0
    took_s: float | None = None
    """How long its sends take (a running average); None until one has finished."""
    paced: bool = False


@dataclass(frozen=True, slots=True)
class _Waiting(Generic[T]):
    subscription_id: uuid.UUID
    delivery_id: uuid.UUID
    item: T


class SendSlots(Generic[T]):
    """Claimed deliveries (`T`, e.g. a claim) waiting for a slot, and the sends in flight, per subscription."""

    def __init__(self, *, concurrency: int, per_subscription: int, ahead_s: float, ahead_max: int) -> None:
        self._concurrency = concurrency
        self._cap = per_subscription
        self._reserved = reserved_slots(concurrency)
        self._ahead_s = ahead_s
        self._ahead_max = ahead_max
        self._subscriptions: dict[uuid.UUID, _Subscription] = {}
        self._waiting: deque[_Waiting[T]] = deque()
        self._sending = 0

    @property
    def sending(self) -> int:
        return self._sending

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def room(self, subscription_id: uuid.UUID, now: float) -> int:
        """How many more deliveries of the subscription may be claimed now."""
        state = self._subscriptions.get(subscription_id)
        if state is None:
            return self._cap
        return max(0, self._cap + self._ahead(state, now) - len(state.sending) - state.waiting)

    def claimable(self) -> int:
        """How many more deliveries may be claimed now, whichever their subscription."""
        return max(0, 2 * self._ahead_max + self._concurrency - self._sending - len(self._waiting))

    def full(self, now: float) -> set[uuid.UUID]:
        """The subscriptions none of whose deliveries may be claimed now."""
        return {sid for sid in self._subscriptions if self.room(sid, now) <= 0}

    def add(self, subscription_id: uuid.UUID, delivery_id: uuid.UUID, item: T, *, paced: bool = False) -> None:
        """A claimed delivery, to be sent when a slot allows (in the order added, as far as slots allow)."""
        state = self._subscriptions.setdefault(subscription_id, _Subscription())
        state.waiting += 1
        state.paced = paced
        self._waiting.append(_Waiting(subscription_id, delivery_id, item))

    def start(self, now: float) -> T | None:
        """The first waiting delivery a slot may take now (counted as sending from `now`), if any."""
        if self._sending >= self._concurrency:
            return None
        free = self._concurrency - self._sending
        for index, waiting in enumerate(self._waiting):
            state = self._subscriptions[waiting.subscription_id]
            if len(state.sending) >= self._cap:
                continue
            if state.sending and free - 1 < self._reserved:
                continue  # the last free slots are kept for subscriptions with nothing in flight
            del self._waiting[index]
            state.waiting -= 1
            state.sending[waiting.delivery_id] = now
            self._sending += 1
            return waiting.item
        return None

    def drop(self, subscription_id: uuid.UUID, delivery_id: uuid.UUID) -> None:
        """Forget a delivery that started but will not be sent (its claim was too old): its slot is free."""
        self._end(subscription_id, delivery_id)

    def finished(self, subscription_id: uuid.UUID, delivery_id: uuid.UUID, now: float) -> None:
        """A send ended at `now`: its slot is free, and its duration counts in the subscription's estimate."""
        state = self._subscriptions.get(subscription_id)
        started = state.sending.get(delivery_id) if state is not None else None
        if state is not None and started is not None:
            took = max(0.0, now - started)
            state.took_s = took if state.took_s is None else (1 - SMOOTHING) * state.took_s + SMOOTHING * took
        self._end(subscription_id, delivery_id)

    def take_waiting(self) -> list[T]:
        """Every delivery still waiting, removed (the worker is stopping)."""
        items = [waiting.item for waiting in self._waiting]
        for waiting in self._waiting:
            self._subscriptions[waiting.subscription_id].waiting -= 1
        self._waiting.clear()
        return items

    def _end(self, subscription_id: uuid.UUID, delivery_id: uuid.UUID) -> None:
        state = self._subscriptions.get(subscription_id)
        if state is None or state.sending.pop(delivery_id, None) is None:
            return
        self._sending -= 1

    def _ahead(self, state: _Subscription, now: float) -> int:
        """Deliveries a subscription may have claimed beyond its slots: as many as its sends start within
        `ahead_s`, judged by the slower of its average send and its longest running one."""
        if state.paced or state.took_s is None:
            return 0
        took = max([state.took_s, *(now - started for started in state.sending.values())])
        if took <= 0:
            return self._ahead_max
        return min(self._ahead_max, int(self._cap * self._ahead_s / took))
