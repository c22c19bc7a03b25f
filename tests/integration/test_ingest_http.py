"""`POST /v1/triggers` in structured, binary and batch mode; 4xx problem+json naming the problem; lookups."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from services.contracts import topics
from services.core.settings import Settings
from services.trigger_ingest.persistence import AcceptedTriggerRow, RejectionRow
from tests.support.harness import smits
from tests.support.kafka import Raw, produce_raw
from tests.support.waiting import eventually

EXAMPLE = json.loads((Path(__file__).resolve().parents[2] / "examples/triggers/regulation_update.json").read_text())
STRUCTURED = {"content-type": "application/cloudevents+json"}
BATCH = {"content-type": "application/cloudevents-batch+json"}


def event(**overrides: Any) -> dict[str, Any]:
    return {key: value for key, value in {**EXAMPLE, **overrides}.items() if value is not None}


def binary_headers(**overrides: str) -> dict[str, str]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "bin-1",
        "ce-source": "/http/binary",
        "ce-type": "smits.trigger.regulation_update.v1",
        "ce-subject": "bu%20payments%20%C3%A9",
        "content-type": "application/json",
    }
    headers.update(overrides)
    return headers


async def test_structured_binary_and_batch_posts_are_accepted_once_durable(settings: Settings) -> None:
    async with smits(settings, ["ingest"]) as app:
        one = await app.api.post("/v1/triggers", content=orjson.dumps(event(id="s-1")), headers=STRUCTURED)
        binary = await app.api.post("/v1/triggers", content=orjson.dumps(EXAMPLE["data"]), headers=binary_headers())
        batch = await app.api.post(
            "/v1/triggers", content=orjson.dumps([event(id=f"b-{n}") for n in range(3)]), headers=BATCH
        )
        assert one.status_code == binary.status_code == batch.status_code == 202
        assert one.json() == {"accepted": [{"source": EXAMPLE["source"], "id": "s-1"}]}
        assert binary.json() == {"accepted": [{"source": "/http/binary", "id": "bin-1"}]}
        assert [ref["id"] for ref in batch.json()["accepted"]] == ["b-0", "b-1", "b-2"]
        await eventually(lambda: app.count(AcceptedTriggerRow), lambda n: n == 5, what="all five stored")
        stored = await app.api.get("/v1/triggers//http/binary/bin-1")
        page_one = await app.api.get("/v1/triggers", params={"limit": 3})
        page_two = await app.api.get("/v1/triggers", params={"limit": 3, "cursor": page_one.json()["next_cursor"]})
    assert stored.json()["subject"] == "bu payments é"  # percent-decoded, UTF-8
    assert stored.json()["status"] == "accepted"
    assert len(page_one.json()["items"]) == 3
    assert len(page_two.json()["items"]) == 2
    assert page_two.json()["next_cursor"] is None
    ids = [item["id"] for item in page_one.json()["items"] + page_two.json()["items"]]
    assert sorted(ids) == ["b-0", "b-1", "b-2", "bin-1", "s-1"]


BAD: list[tuple[str, bytes, dict[str, str], int, str | None, str | None]] = [
    ("not json", b"{nope", STRUCTURED, 400, None, "InvalidJson"),
    ("missing id", orjson.dumps(event(id=None)), STRUCTURED, 422, "id", "MissingAttribute"),
    ("unknown type", orjson.dumps(event(type="smits.trigger.weather.v1")), STRUCTURED, 422, "type", "UnknownType"),
    (
        "wrong field type",
        orjson.dumps(event(data={**EXAMPLE["data"], "effective_date": 5})),
        STRUCTURED,
        422,
        "data.effective_date",
        "InvalidData",
    ),
    ("2 MiB value", orjson.dumps(event(padding="x" * 2 * 1024 * 1024)), STRUCTURED, 413, None, "EventTooLarge"),
    (
        "binary without ce-specversion",
        b"{}",
        {k: v for k, v in binary_headers().items() if k != "ce-specversion"},
        422,
        "specversion",
        "MissingAttribute",
    ),
    ("invalid UTF-8 header", b"{}", binary_headers(**{"ce-id": "%C3%28"}), 400, "ce-id", "InvalidHeader"),
    ("bad event in a batch", orjson.dumps([event(id="x"), event(type="nope")]), BATCH, 422, "[1].type", "UnknownType"),
    ("empty batch", b"[]", BATCH, 422, "body", None),
    (
        "partitionkey not a string",
        orjson.dumps(event(partitionkey={"a": 1})),
        STRUCTURED,
        422,
        "partitionkey",
        "InvalidAttribute",
    ),
    (
        "partitionkey too long",
        orjson.dumps(event(partitionkey="k" * 501)),
        STRUCTURED,
        422,
        "partitionkey",
        "InvalidAttribute",
    ),
]


@pytest.mark.parametrize(("name", "body", "headers", "status", "field", "reason"), BAD, ids=[b[0] for b in BAD])
async def test_bad_posts_get_problem_json_naming_the_problem(
    settings: Settings,
    name: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    field: str | None,
    reason: str | None,
) -> None:
    async with smits(settings, ["ingest"]) as app:
        response = await app.api.post("/v1/triggers", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["title"]
    if field is not None:
        assert problem["field"] == field
    if reason is not None:
        assert problem["reason"] == reason
    assert "detail" in problem


async def test_a_rejected_trigger_reports_its_reason_by_source_and_id(settings: Settings) -> None:
    unknown = orjson.dumps(event(id="gone", type="smits.trigger.weather.v1"))
    async with smits(settings, ["ingest"]) as app:
        await produce_raw(
            settings, topics.TRIGGERS, [Raw(unknown, [("content-type", b"application/cloudevents+json")])]
        )
        await eventually(lambda: app.count(RejectionRow), lambda n: n == 1, what="rejection")
        status = await app.api.get(f"/v1/triggers/{EXAMPLE['source']}/gone")
        rejected = await app.api.get("/v1/triggers", params={"status": "rejected"})
        missing = await app.api.get("/v1/triggers//nowhere/none")
    assert status.status_code == 200
    assert status.json()["status"] == "rejected"
    assert status.json()["reason"] == "UnknownType"
    assert status.json()["field"] == "type"
    assert [item["id"] for item in rejected.json()["items"]] == ["gone"]
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


async def test_posting_needs_the_triggers_write_scope(settings: Settings) -> None:
    async with smits(settings, ["ingest"]) as app:
        anonymous = await app.api.post(
            "/v1/triggers", content=orjson.dumps(event()), headers={**STRUCTURED, "authorization": ""}
        )
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
