"""SLA timers with an injected clock: overdue, escalation and acknowledgement reminders fire once each."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from services.core.identity.model import Role
from services.core.outbox import OutboxRelay
from services.core.settings import Settings
from services.strategy_engine.persistence import EngineOutboxRow, TimelineRow
from services.strategy_engine.policies import load
from services.strategy_engine.timers import TimerLoop
from tests.support.events import accepted, feed_engine
from tests.support.harness import Harness, smits
from tests.support.waiting import eventually

NOW = datetime.now(UTC)


async def _types(app: Harness) -> Counter[str]:
    async with app.runtime.uow.begin() as session:
        return Counter((await session.scalars(select(TimelineRow.type))).all())


async def test_overdue_escalation_and_reminders_fire_once_per_phase(settings: Settings) -> None:
    async with smits(settings, ["engine"]) as app:
        await feed_engine(
            settings,
            [
                accepted(
                    "merger_acquisition",
                    "m1",
                    at=NOW,
                    deal_id="D1",
                    deal_type="merger",
                    counterparty="Northwind",
                    announced_on="2026-11-01",
                )
            ],
        )
        # The deal is need-to-know (restricted to strategy managers): everyone here who acts on it is one.
        api = await app.person("manager@example.org", Role.STRATEGY_MANAGER)
        review = (await eventually(lambda: _reviews(api), lambda r: len(r) == 1, what="review"))[0]
        cio = "cio@example.org"
        await app.person(cio, Role.STRATEGY_MANAGER)
        cfo = await app.person("cfo@example.org", Role.CONTRIBUTOR, Role.STRATEGY_MANAGER)
        await api.patch(f"/v1/reviews/{review}", json={"owner": cio})
        clock = {"now": NOW}
        relay = OutboxRelay(uow=app.runtime.uow, row=EngineOutboxRow, producer=app.runtime.producer, settings=settings)
        timers = TimerLoop(
            uow=app.runtime.uow,
            relay=relay,
            interval_s=1,
            policies=load(),
            reminder_offsets=(),  # this test is about the due dates; reminders before them: test_reminders.py
            clock=lambda: clock["now"],
        )

        assert await timers.tick() == 0  # triage is due in 2 days
        clock["now"] = NOW + timedelta(days=3)
        assert await timers.tick() == 1  # overdue
        assert await timers.tick() == 0  # ... once
        clock["now"] = NOW + timedelta(days=5)
        assert await timers.tick() == 1  # escalated 2 days after the due date
        assert await timers.tick() == 0

        # A new phase re-arms the timers; publishing a document sets acknowledgement due dates.
        await api.post(f"/v1/reviews/{review}/transitions", json={"to": "assess"})
        doc = await api.post(
            f"/v1/reviews/{review}/documents",
            json={
                "kind": "strategy_assessment_report",
                "title": "r",
                "publish": True,
                "certified_by": "cio",
                "ack_due_days": 1,
                "distribution": [{"name": "cfo@example.org"}, {"name": "ciso@example.org"}],
            },
        )
        await cfo.post(f"/v1/documents/{doc.json()['document_id']}/acknowledgements", json={})
        clock["now"] = datetime.now(UTC) + timedelta(days=2)  # ack due passed; assess (10 d) not yet
        assert await timers.tick() == 1  # one reminder: ciso has not acknowledged
        clock["now"] = datetime.now(UTC) + timedelta(days=11)
        assert await timers.tick() == 1  # assess overdue
        clock["now"] = datetime.now(UTC) + timedelta(days=30)
        assert await timers.tick() == 2  # assess escalated to the manager, then the lead; the reminder is not repeated
        types = await _types(app)
        detail = (await api.get(f"/v1/reviews/{review}/timeline")).json()
    assert types["review.overdue"] == 2
    assert types["review.escalated"] == 3  # triage: level 1 (level 2 cancelled by the new phase); assess: levels 1, 2
    assert types["document.acknowledgement_due"] == 1
    reminder = next(e for e in detail if e["type"] == "document.acknowledgement_due")
    assert reminder["data"]["recipient"] == "ciso@example.org"
    overdue = [e["data"]["phase"] for e in detail if e["type"] == "review.overdue"]
    assert overdue == ["triage", "assess"]


async def _reviews(api: httpx.AsyncClient) -> list[str]:
    return [r["id"] for r in (await api.get("/v1/reviews")).json()["items"]]
