"""What the console's board and review page read from the engine: a review's next transitions with the guard
that blocks each, in words."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.core.identity.model import Role
from services.core.settings import Settings
from tests.support import seeding
from tests.support.harness import Harness

NOW = datetime.now(UTC).replace(microsecond=0)
OFFICE = "office@corp.example"


@pytest.fixture(params=seeding.DATABASES)
async def app(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> AsyncIterator[Harness]:
    async with seeding.engine_on(request.param, settings, tmp_path) as harness:
        yield harness


async def test_a_review_names_its_next_transitions_and_the_guard_blocking_each(app: Harness) -> None:
    manager = await app.person(OFFICE, Role.STRATEGY_MANAGER)
    async with app.runtime.uow.begin() as session:
        review = await seeding.review(session, opened_at=NOW)
        closed = await seeding.review(session, opened_at=NOW, state="closed")
    before = (await manager.get(f"/v1/reviews/{review.id}")).json()["transitions"]
    assigned = await manager.patch(f"/v1/reviews/{review.id}", json={"owner": OFFICE})
    after = (await manager.get(f"/v1/reviews/{review.id}")).json()["transitions"]
    moved = await manager.post(f"/v1/reviews/{review.id}/transitions", json={"to": "assess"})
    in_assess = (await manager.get(f"/v1/reviews/{review.id}")).json()["transitions"]
    terminal = (await manager.get(f"/v1/reviews/{closed.id}")).json()["transitions"]
    cancel = {
        "to": "cancelled",
        "allowed": False,
        "guard": "reason_given",
        "blocked_by": "cancelling needs a reason",
    }
    assert before == [
        {
            "to": "assess",
            "allowed": False,
            "guard": "owner_assigned",
            "blocked_by": "triage needs an owner before assessment",
        },
        cancel,
    ]
    assert assigned.status_code == 200, assigned.text
    assert after == [{"to": "assess", "allowed": True, "guard": None, "blocked_by": None}, cancel]
    assert moved.status_code == 200, moved.text
    assert in_assess == [
        {
            "to": "generate",
            "allowed": False,
            "guard": "assessment_complete",
            "blocked_by": "no assessment recorded",
        },
        cancel,
    ]
    assert terminal == []
