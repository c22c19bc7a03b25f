"""Two `smits serve engine` processes on one Postgres: every due timer fires exactly once."""

from __future__ import annotations

import signal
import subprocess
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from services.core.db import UnitOfWork, create_engine
from services.core.settings import Settings
from services.strategy_engine.persistence import ReviewRow, TimelineRow
from tests.support.processes import SMITS, service_env
from tests.support.waiting import eventually

REVIEWS = 300


def _spawn(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([SMITS, "serve", "engine", "--port", "0"], env=env, stderr=subprocess.DEVNULL)


async def test_two_engines_fire_each_due_timer_exactly_once(settings: Settings) -> None:
    engine = create_engine(settings.database_url.get_secret_value())
    uow = UnitOfWork(engine)
    past = datetime.now(UTC) - timedelta(days=1)
    async with uow.begin() as session:
        for n in range(REVIEWS):
            session.add(
                ReviewRow(
                    id=uuid.uuid4(),
                    correlation_key=f"k{n}",
                    open_key=f"k{n}",
                    policy_id="regulation-update",
                    title=f"review {n}",
                    category="regulation_update",
                    severity="high",
                    scope="bu",
                    state="triage",
                    owner=None,
                    opened_at=past,
                    phase_entered_at=past,
                    due_at=past,
                    escalate_after_s=0,
                    escalate_at=past,
                    first_trigger_at=past,
                    last_trigger_at=past,
                    event_sequence=0,
                )
            )
    env = service_env(settings, SMITS_TIMER_INTERVAL_S="0.05")
    processes = [_spawn(env) for _ in range(2)]

    async def fired() -> int:
        async with uow.begin() as session:
            return int(await session.scalar(select(func.count()).select_from(TimelineRow)) or 0)

    try:
        await eventually(fired, lambda n: n >= 3 * REVIEWS, within=60, what="every overdue and escalation")
        await eventually(fired, lambda n: n >= 3 * REVIEWS, within=1)  # settle: nothing more may come
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
    async with uow.begin() as session:
        rows = (await session.execute(select(TimelineRow.review_id, TimelineRow.type, TimelineRow.data))).all()
    await engine.dispose()
    per_review = Counter((review_id, type_, data.get("level")) for review_id, type_, data in rows)
    assert len(rows) == 3 * REVIEWS
    assert set(per_review.values()) == {1}  # each review: one overdue, one escalation per level of the chain
    assert Counter(type_ for _, type_, _ in rows) == {"review.overdue": REVIEWS, "review.escalated": 2 * REVIEWS}
    assert Counter(data.get("level") for _, type_, data in rows if type_ == "review.escalated") == {
        1: REVIEWS,  # the owner's manager (unresolved here: no owner)
        2: REVIEWS,  # the org unit's lead (unresolved: no such unit)
    }
    assert all(process.returncode == 0 for process in processes)
