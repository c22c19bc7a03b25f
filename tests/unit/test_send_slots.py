"""Which claimed webhooks may be sent now, and how far ahead a subscription may be claimed (pure)."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from services.notifier.slots import SendSlots

CAP = 4


def slots(*, concurrency: int = 10, ahead_s: float = 20.0, ahead_max: int = 50) -> SendSlots[uuid.UUID]:
    return SendSlots(concurrency=concurrency, per_subscription=CAP, ahead_s=ahead_s, ahead_max=ahead_max)


def add(ledger: SendSlots[uuid.UUID], subscription: uuid.UUID, n: int, *, paced: bool = False) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(n)]
    for delivery in ids:
        ledger.add(subscription, delivery, delivery, paced=paced)
    return ids


def start_all(ledger: SendSlots[uuid.UUID], now: float = 0.0) -> list[uuid.UUID]:
    started = []
    while (item := ledger.start(now)) is not None:
        started.append(item)
    return started


def test_a_subscription_sends_at_most_its_cap_and_the_rest_wait_in_order() -> None:
    ledger, sub = slots(), uuid.uuid4()
    ids = add(ledger, sub, 6)
    assert start_all(ledger) == ids[:CAP]
    assert (ledger.sending, ledger.waiting) == (CAP, 2)
    ledger.finished(sub, ids[0], 0.001)
    assert start_all(ledger) == [ids[4]]


def test_the_last_free_slots_go_only_to_a_subscription_with_nothing_in_flight() -> None:
    ledger = slots(concurrency=10)  # two reserved
    slow = [uuid.uuid4() for _ in range(3)]
    for sub in slow:
        add(ledger, sub, CAP)
    started = start_all(ledger)
    assert len(started) == 9  # 4 + 4, then the third only one (its second would leave fewer than 2 free)
    healthy = uuid.uuid4()
    [mine] = add(ledger, healthy, 1)
    assert start_all(ledger) == [mine]


def test_no_claim_ahead_until_a_send_has_finished_nor_for_a_rate_limited_subscription() -> None:
    ledger, sub, paced = slots(), uuid.uuid4(), uuid.uuid4()
    assert ledger.room(sub, 0.0) == CAP
    first = add(ledger, sub, CAP)
    assert ledger.room(sub, 0.0) == 0
    assert ledger.full(0.0) == {sub}
    start_all(ledger)
    ledger.finished(sub, first[0], 0.002)
    assert ledger.room(sub, 0.002) == CAP + 50 - (CAP - 1)  # fast sends: the most ahead allowed, 3 still sending
    ids = add(ledger, paced, 1, paced=True)
    start_all(ledger)
    ledger.finished(paced, ids[0], 0.003)
    assert ledger.room(paced, 0.003) == CAP


def test_slow_sends_shrink_the_window_to_the_cap_even_before_they_finish() -> None:
    ledger, sub = slots(ahead_s=20.0), uuid.uuid4()
    ids = add(ledger, sub, 1)
    start_all(ledger, now=0.0)
    ledger.finished(sub, ids[0], 0.01)  # 10 ms: 4 x 20 / 0.01 = 8000, capped at 50
    assert ledger.room(sub, 0.01) == CAP + 50
    running = add(ledger, sub, 1)
    start_all(ledger, now=1.0)
    assert ledger.room(sub, 11.0) == CAP + 8 - 1  # running for 10 s: 4 x 20 / 10 ahead
    assert ledger.room(sub, 100.0) == CAP - 1  # running for 99 s: nothing ahead
    ledger.finished(sub, running[0], 100.0)
    assert ledger.room(sub, 100.0) == CAP + 4  # the average has moved to ~20 s: 4 x 20 / 20 ahead


def test_claims_in_all_are_bounded_and_waiting_ones_are_handed_back_on_stop() -> None:
    ledger = slots(concurrency=10, ahead_max=50)
    assert ledger.claimable() == 110
    sub = uuid.uuid4()
    ids = add(ledger, sub, 6)
    start_all(ledger)
    assert ledger.claimable() == 110 - 6
    assert ledger.take_waiting() == ids[CAP:]
    assert ledger.waiting == 0
    assert ledger.room(sub, 0.0) == 0  # four still sending


def test_a_dropped_send_frees_its_slot_without_counting_as_a_send() -> None:
    ledger, sub = slots(), uuid.uuid4()
    ids = add(ledger, sub, 1)
    start_all(ledger)
    ledger.drop(sub, ids[0])
    assert ledger.sending == 0
    assert ledger.room(sub, 5.0) == CAP  # no estimate yet: nothing ahead


@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["add", "start", "finish"])), max_size=200))
def test_slots_are_never_exceeded(steps: list[tuple[int, str]]) -> None:
    ledger = slots(concurrency=6)
    subs = [uuid.uuid4() for _ in range(4)]
    sending: dict[uuid.UUID, list[uuid.UUID]] = {sub: [] for sub in subs}
    owner: dict[uuid.UUID, uuid.UUID] = {}
    clock = 0.0
    for index, action in steps:
        clock += 0.01
        sub = subs[index]
        if action == "add":
            [delivery] = add(ledger, sub, 1)
            owner[delivery] = sub
        elif action == "start":
            item = ledger.start(clock)
            if item is not None:
                sending[owner[item]].append(item)
        elif sending[sub]:
            ledger.finished(sub, sending[sub].pop(0), clock)
        assert all(len(items) <= CAP for items in sending.values())
        assert sum(len(items) for items in sending.values()) == ledger.sending <= 6
