"""Bad input that used to reach a 500 is a 4xx problem+json naming the field, on SQLite and PostgreSQL alike
(issue 12, class 3): cursors and `since` without a zone or out of range, row ids past BIGINT, explicit nulls
on PATCH, numbers past the JSON encoder, URLs longer than their column once normalised, lone surrogates."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.core.cli import alembic_config
from services.core.settings import Settings
from services.strategy_engine.persistence import ReviewRow
from tests.support.events import accepted, feed_engine, tuned
from tests.support.harness import Harness, smits
from tests.support.waiting import eventually


@pytest.fixture(params=["postgres", "sqlite"])
async def app(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> AsyncIterator[Harness]:
    """All three services in-process on the test's PostgreSQL database, or on a fresh SQLite file."""
    if request.param == "sqlite":
        from alembic import command

        url = f"sqlite+aiosqlite:///{tmp_path / 'smits.db'}"
        await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
        settings = tuned(settings, database_url=url)
    async with smits(settings) as harness:
        yield harness


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def _refused(response: httpx.Response, field: str, status: int = 422) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    fields = {body.get("field")} | {error["field"] for error in body.get("errors", [])}
    assert field in fields, body


async def _review(app: Harness, settings: Settings) -> str:
    document = accepted(
        "regulation_update",
        "bad-input-1",
        at=datetime.now(UTC),
        regulation_id="BAD-1",
        title="t",
        jurisdiction="EU",
        issuing_body="EP",
        change_type="new",
        effective_date="2027-06-01",
    )
    await feed_engine(app.runtime.settings, [document])
    await eventually(lambda: app.count(ReviewRow), lambda n: n == 1, what="review opened")
    review: str = (await app.api.get("/v1/reviews")).json()["items"][0]["id"]
    return review


@pytest.mark.parametrize(
    ("path", "cursor"),
    [
        ("/v1/reviews", f"2026-01-01T00:00:00|{uuid.UUID(int=1)}"),  # no time zone
        ("/v1/reviews", f"0001-01-01T00:00:00+14:00|{uuid.UUID(int=1)}"),  # before year 1 in UTC
        ("/v1/reviews", f"9999-12-31T23:00:00-14:00|{uuid.UUID(int=1)}"),  # after year 9999 in UTC
        ("/v1/triggers", "2026-01-01T00:00:00+00:00|1180591620717411303424"),  # id past BIGINT
        ("/v1/triggers", "2026-01-01T00:00:00|1"),
    ],
)
async def test_cursors_that_decode_but_do_not_fit_are_400(app: Harness, path: str, cursor: str) -> None:
    _refused(await app.api.get(path, params={"cursor": _cursor(cursor)}), "cursor", 400)


@pytest.mark.parametrize("since", ["2026-01-01T00:00:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
async def test_since_needs_a_zone_and_a_range(app: Harness, since: str) -> None:
    _refused(await app.api.get("/v1/triggers", params={"since": since}), "since")


async def test_subscription_patch_refuses_null_where_a_column_cannot_hold_it(app: Harness) -> None:
    created = await app.api.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/hook"})
    subscription = f"/v1/subscriptions/{created.json()['id']}"
    for field in ("url", "event_types", "categories", "severities", "scopes", "enabled"):
        _refused(await app.api.patch(subscription, json={field: None}), field)
    cleared = await app.api.patch(subscription, json={"description": None, "rate_limit_per_s": None})
    assert cleared.status_code == 200, cleared.text
    assert (await app.api.get(subscription)).json()["url"] == "http://127.0.0.1:9/hook"


async def test_a_url_longer_than_its_column_once_percent_encoded_is_422(app: Harness) -> None:
    url = "http://127.0.0.1:9/" + "é" * 1900  # 1,919 characters as typed, 11,419 once encoded
    _refused(await app.api.post("/v1/subscriptions", json={"url": url}), "url")
    created = await app.api.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/"})
    _refused(await app.api.patch(f"/v1/subscriptions/{created.json()['id']}", json={"url": url}), "url")


async def test_review_patch_null_title_and_huge_approver_counts_are_422(app: Harness, settings: Settings) -> None:
    review = await _review(app, settings)
    _refused(await app.api.patch(f"/v1/reviews/{review}", json={"title": None}), "title")
    unassigned = await app.api.patch(f"/v1/reviews/{review}", json={"owner": None})
    assert unassigned.status_code == 200, unassigned.text  # null clears what may be empty
    approvers: dict[str, Any] = {"mode": "sequence", "names": ["cio"], "required": 2**64}
    _refused(
        await app.api.post(f"/v1/reviews/{review}/assessments", json={"approvers": approvers}), "approvers.required"
    )


async def test_a_lone_surrogate_in_dry_run_data_is_422(app: Harness) -> None:
    document = accepted("budget_change", "s-1", at=datetime.now(UTC), note="\ud800")
    body = json.dumps(document).encode()  # stdlib json escapes it as \ud800, which JSON allows
    response = await app.api.post("/v1/policies/dry-run", content=body, headers={"content-type": "application/json"})
    _refused(response, "data")


async def test_a_structured_event_that_is_not_an_object_names_the_body(app: Harness) -> None:
    response = await app.api.post(
        "/v1/triggers", content=b"[1]", headers={"content-type": "application/cloudevents+json"}
    )
    _refused(response, "body")
