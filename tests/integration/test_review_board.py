"""What the console's board and review page read from the engine: reviews filtered (org unit, opened between,
free text over titles and trigger data) and sorted with cursor paging that neither skips nor repeats a review in
any order, restricted reviews only for the cleared; a review's next transitions with the guard that blocks each,
in words."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.core.identity.model import Role
from services.core.settings import Settings
from tests.support import seeding
from tests.support.harness import Harness

NOW = datetime.now(UTC).replace(microsecond=0)
OFFICE, VIEWER = "office@corp.example", "viewer@corp.example"
SECRET = ["role:strategy_manager"]
DAY = timedelta(days=1)
RANK = {"low": 1, "medium": 2, "high": 3, "critical": 4}
EARLIEST, LATEST = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
ORDERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "opened_at": lambda r: (r["opened_at"], r["id"]),
    "due_at": lambda r: (r["due_at"] or LATEST, r["id"]),
    "-due_at": lambda r: (r["due_at"] or EARLIEST, r["id"]),
    "severity": lambda r: (RANK[r["severity"]], r["id"]),
    "title": lambda r: (r["title"].lower(), r["id"]),
}
"""How each order sorts (ascending; `-x` is `x` reversed unless listed): what the listings must agree with."""


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


# Seeds with ties in every sort key: opened at three instants, due on two days or never, four severities,
# titles equal but for case; the restricted one would sort first in every order it is part of.
SEEDS: list[dict[str, Any]] = [
    {"title": f"{name} review", "opened_at": NOW - opened * DAY, "due_at": due, "severity": severity, "scope": scope}
    for name, opened, due, severity, scope in [
        ("alpha", 3, NOW + DAY, "high", "payments"),
        ("Alpha", 3, NOW + DAY, "high", "payments"),
        ("bravo", 3, None, "low", "lending"),
        ("Charlie", 2, NOW - DAY, "critical", None),
        ("charlie", 2, None, "medium", "payments"),
        ("delta", 2, NOW + DAY, "medium", "lending"),
        ("Echo", 1, NOW - DAY, "low", None),
        ("echo", 1, NOW + DAY, "critical", "payments"),
        ("foxtrot", 1, None, "high", "lending"),
        ("golf", 1, NOW - DAY, "high", "payments"),
        ("hotel", 3, NOW + 2 * DAY, "medium", None),
    ]
]


async def _seeded(app: Harness) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The open reviews (as `SEEDS` with their ids) and the restricted one."""
    async with app.runtime.uow.begin() as session:
        rows = [await seeding.review(session, **seed) for seed in SEEDS]
        secret = await seeding.review(
            session,
            title="AAA secret deal",
            opened_at=NOW,
            due_at=NOW - 2 * DAY,
            severity="critical",
            scope="payments",
            clearance=SECRET,
            triggers=[{"deal_id": "D-SECRET-1", "counterparty": "Contoso"}],
        )
    seeds = [{**seed, "id": row.id} for seed, row in zip(SEEDS, rows, strict=True)]
    return seeds, {
        "title": secret.title,
        "opened_at": NOW,
        "due_at": secret.due_at,
        "severity": "critical",
        "id": secret.id,
    }


def _expected(reviews: list[dict[str, Any]], sort: str) -> list[str]:
    ascending = sort.removeprefix("-")
    order = ORDERS.get(sort, ORDERS[ascending])
    ranked = sorted(reviews, key=order, reverse=sort.startswith("-"))
    return [str(review["id"]) for review in ranked]


async def _all_pages(client: httpx.AsyncClient, limit: int, **params: Any) -> list[str]:
    """Every page of the listing, following `next_cursor` (at most 50 pages)."""
    ids: list[str] = []
    cursor: str | None = None
    for _ in range(50):
        response = await client.get(
            "/v1/reviews", params={**params, "limit": limit, **({"cursor": cursor} if cursor else {})}
        )
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return ids
    raise AssertionError("more than 50 pages")


SORTS = ["-opened_at", "opened_at", "due_at", "-due_at", "severity", "-severity", "title"]


async def test_every_order_pages_through_every_review_once_and_the_restricted_only_for_the_cleared(
    app: Harness,
) -> None:
    viewer = await app.person(VIEWER, Role.VIEWER)
    manager = await app.person(OFFICE, Role.STRATEGY_MANAGER)
    seeds, secret = await _seeded(app)
    for sort in SORTS:
        for limit in (1, 3, 4):
            assert await _all_pages(viewer, limit, sort=sort) == _expected(seeds, sort), (sort, limit)
        assert await _all_pages(manager, 3, sort=sort) == _expected([*seeds, secret], sort), sort
    default = await _all_pages(viewer, 5)
    assert default == _expected(seeds, "-opened_at")


async def test_filters_by_org_unit_opening_time_and_free_text_hide_the_restricted_from_the_uncleared(
    app: Harness,
) -> None:
    viewer = await app.person(VIEWER, Role.VIEWER)
    manager = await app.person(OFFICE, Role.STRATEGY_MANAGER)
    seeds, secret = await _seeded(app)
    async with app.runtime.uow.begin() as session:
        noted = await seeding.review(
            session,
            title="Pricing 100% of_it",
            opened_at=NOW - 5 * DAY,
            triggers=[{"vendor": "Initech", "note": "EOL announced"}, {"vendor": "Umbrella"}],
        )
        affix = await seeding.review(session, title="Affix it", opened_at=NOW - 10 * DAY)  # f_i, were _ a wildcard

    def titles(*names: str) -> set[str]:
        return {f"{name} review" for name in names}

    async def listed(client: httpx.AsyncClient, **params: Any) -> set[str]:
        return {item["title"] for item in (await _json(client, params))["items"]}

    assert await listed(viewer, org_unit="payments") == titles("alpha", "Alpha", "charlie", "echo", "golf")
    assert await listed(manager, org_unit="payments") == titles("alpha", "Alpha", "charlie", "echo", "golf") | {
        secret["title"]
    }
    two_days_ago = (NOW - 2 * DAY).isoformat()
    assert await listed(viewer, opened_from=two_days_ago) == titles(
        "Charlie", "charlie", "delta", "Echo", "echo", "foxtrot", "golf"
    )
    assert await listed(viewer, opened_to=two_days_ago) == titles("alpha", "Alpha", "bravo", "hotel") | {
        noted.title,
        affix.title,
    }
    assert await listed(viewer, opened_from=two_days_ago, opened_to=(NOW - DAY).isoformat()) == titles(
        "Charlie", "charlie", "delta"
    )
    assert await listed(viewer, q="CHARLIE") == titles("Charlie", "charlie")
    assert await listed(viewer, q="initech") == {noted.title}  # a trigger's data
    assert await listed(viewer, q="umbrella", org_unit="payments") == set()  # filters combine
    assert await listed(viewer, q="100%") == {noted.title}  # a wildcard is a character
    assert await listed(viewer, q="f_i") == {noted.title}
    assert await listed(viewer, q="%") == {noted.title}
    assert await listed(viewer, q="   ") == {s["title"] for s in seeds} | {noted.title, affix.title}  # blank: no search
    for text in ("contoso", "D-SECRET", "secret deal"):
        assert await listed(viewer, q=text) == set(), text
        assert await listed(manager, q=text) == {secret["title"]}, text
    sorted_search = await _all_pages(viewer, 1, q="review", org_unit="payments", sort="-severity")
    assert sorted_search == _expected([s for s in seeds if s["scope"] == "payments"], "-severity")


async def _json(client: httpx.AsyncClient, params: dict[str, Any]) -> dict[str, Any]:
    response = await client.get("/v1/reviews", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"q": "x" * 201}, 422, "q"),
        ({"opened_from": "2026-11-02T00:00:00Z", "opened_to": "2026-11-01T00:00:00Z"}, 422, "opened_to"),
        ({"opened_from": "2026-11-01T00:00:00"}, 422, "opened_from"),  # no time zone
        ({"sort": "owner"}, 422, "sort"),
        ({"sort": "title", "cursor": "garbage"}, 400, "cursor"),
    ],
)
async def test_bad_filters_are_refused_naming_the_field(
    app: Harness, params: dict[str, Any], status: int, field: str
) -> None:
    response = await app.api.get("/v1/reviews", params=params)
    assert response.status_code == status, response.text
    body = response.json()
    assert field in {body.get("field")} | {error["field"] for error in body.get("errors", [])}, body


async def test_a_cursor_resumes_only_the_order_it_was_made_for(app: Harness) -> None:
    await _seeded(app)
    newest = (await _json(app.api, {"limit": 1}))["next_cursor"]
    by_title = (await _json(app.api, {"limit": 1, "sort": "title"}))["next_cursor"]
    by_severity = (await _json(app.api, {"limit": 1, "sort": "severity"}))["next_cursor"]
    mixed = [
        await app.api.get("/v1/reviews", params={"sort": sort, "cursor": cursor})
        for sort, cursor in (
            ("title", newest),
            ("-opened_at", by_title),
            ("-severity", by_severity),
            ("due_at", by_title),
        )
    ]
    assert all(response.status_code == 400 for response in mixed), [r.text for r in mixed]
    assert all(response.json()["field"] == "cursor" for response in mixed)
    assert uuid.UUID((await _json(app.api, {"sort": "title", "cursor": by_title}))["items"][0]["id"])


async def test_kpis_trend_per_iso_week_and_open_reviews_by_category_and_org_unit(app: Harness) -> None:
    viewer = await app.person(VIEWER, Role.VIEWER)
    manager = await app.person(OFFICE, Role.STRATEGY_MANAGER)
    opened = [NOW, NOW, NOW - 7 * DAY, NOW - 30 * DAY, NOW - 85 * DAY]  # the last one before the twelve weeks
    async with app.runtime.uow.begin() as session:
        for n, at in enumerate(opened):
            await seeding.review(
                session, opened_at=at, scope="payments", triggers=[{"n": n}] * (n + 1), due_at=NOW - DAY
            )
        await seeding.review(session, opened_at=NOW, category="budget_change", scope="lending")
        await seeding.review(session, opened_at=NOW, category="budget_change", state="closed", scope="lending")
        await seeding.review(
            session, opened_at=NOW, category="merger_acquisition", scope="Contoso Secret", clearance=SECRET
        )
    seen_by_viewer = await viewer.get("/v1/kpis")
    uncleared, cleared = seen_by_viewer.json(), (await manager.get("/v1/kpis")).json()

    def week(at: datetime) -> str:
        year, number, _ = at.date().isocalendar()
        return f"{year}-W{number:02d}"

    trend = uncleared["trend"]
    labels = [entry["week"] for entry in trend]
    assert len(trend) == 12
    assert labels == sorted(labels)
    assert labels[-1] == week(NOW)
    assert all(datetime.fromisoformat(e["starts"]).weekday() == 0 for e in trend)  # Mondays
    triggers: dict[str, int] = {}
    reviews: dict[str, int] = {}
    for n, at in enumerate(opened):
        triggers[week(at)] = triggers.get(week(at), 0) + n + 1
        reviews[week(at)] = reviews.get(week(at), 0) + 1
    reviews[week(NOW)] += 3  # the budget changes and the restricted deal: totals count every review
    assert {e["week"]: e["triggers_accepted"] for e in trend} == {label: triggers.get(label, 0) for label in labels}
    assert {e["week"]: e["reviews_opened"] for e in trend} == {label: reviews.get(label, 0) for label in labels}
    assert cleared["trend"] == trend

    assert uncleared["by_category"] == [
        {"category": "regulation_update", "open": 5, "overdue": 5},
        {"category": "budget_change", "open": 1, "overdue": 0},
    ]
    assert uncleared["by_org_unit"] == [
        {"org_unit": "payments", "open": 5, "overdue": 5},
        {"org_unit": "lending", "open": 1, "overdue": 0},
    ]
    assert "Contoso" not in seen_by_viewer.text
    assert {"category": "merger_acquisition", "open": 1, "overdue": 0} in cleared["by_category"]
    assert {"org_unit": "Contoso Secret", "open": 1, "overdue": 0} in cleared["by_org_unit"]
