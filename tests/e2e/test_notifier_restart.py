"""Kill -9 the notifier process mid-run and restart it: every webhook arrives, and exactly once after dedup."""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable

from services.core.db import UnitOfWork, create_engine
from services.core.settings import Settings
from tests.support.events import publish, review_event
from tests.support.processes import SMITS, service_env
from tests.support.receiver import Receiver
from tests.support.subscriptions import subscribe_directly
from tests.support.verify import verify_both
from tests.support.waiting import eventually

REVIEWS, PER_REVIEW = 30, 10


async def _subscribe(settings: Settings, url: str) -> str:
    engine = create_engine(settings.database_url.get_secret_value())
    try:
        return await subscribe_directly(UnitOfWork(engine), url)
    finally:
        await engine.dispose()


def _start(settings: Settings) -> subprocess.Popen[bytes]:
    env = service_env(
        settings,
        SMITS_WEBHOOK_ALLOW_CIDRS="127.0.0.0/8",
        SMITS_DELIVERY_RETRY_SCHEDULE="0,0.2,0.2,0.2,0.2",
        SMITS_DELIVERY_TIMEOUT_S="2",
        SMITS_DELIVERY_LEASE_S="3",
        SMITS_DELIVERY_BATCH_SIZE="20",
    )
    return subprocess.Popen([SMITS, "serve", "notifier", "--port", "0"], env=env, stderr=subprocess.DEVNULL)


async def test_kill_9_mid_run_then_restart_delivers_everything_exactly_once_after_dedup(settings: Settings) -> None:
    reviews = [uuid.uuid4() for _ in range(REVIEWS)]
    events = [review_event(review, n) for n in range(1, PER_REVIEW + 1) for review in reviews]
    expected = {f"msg_{event.id.hex}": event for event in events}
    with Receiver(delay_s=0.01) as receiver:
        secret = await _subscribe(settings, receiver.url)
        await publish(settings, events)
        first = _start(settings)
        try:
            await eventually(_count(receiver), lambda n: n >= len(events) // 4, within=60, what="a quarter sent")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        sent_before_kill = len(set(receiver.ids()))
        second = _start(settings)
        try:
            await eventually(_unique(receiver), lambda n: n == len(events), within=90, what="every webhook")
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=30)

    assert first.returncode == -signal.SIGKILL
    assert 0 < sent_before_kill < len(events)
    assert set(receiver.ids()) == set(expected)  # nothing lost, nothing foreign
    assert len(receiver.received) >= len(events)  # at least once (a kill may cause a resend)
    first_arrival: dict[str, int] = {}
    for index, message in enumerate(receiver.received):
        first_arrival.setdefault(message.headers["webhook-id"], index)
        verify_both(secret, message)
    by_review: dict[uuid.UUID, list[int]] = defaultdict(list)
    for msg_id in sorted(first_arrival, key=first_arrival.__getitem__):
        by_review[expected[msg_id].review_id].append(expected[msg_id].sequence)
    assert all(sequence == sorted(sequence) for sequence in by_review.values())  # order kept across the crash


def _count(receiver: Receiver) -> Callable[[], Awaitable[int]]:
    async def probe() -> int:
        return len(receiver.received)

    return probe


def _unique(receiver: Receiver) -> Callable[[], Awaitable[int]]:
    async def probe() -> int:
        return len(set(receiver.ids()))

    return probe
