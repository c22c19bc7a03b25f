"""Body-size caps (413) and the per-key ingest rate limit (429 with Retry-After), as problem+json."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson

from services.core.settings import Settings
from tests.support.events import tuned
from tests.support.harness import smits

EXAMPLE = (Path(__file__).resolve().parents[2] / "examples/triggers/goal_change.json").read_bytes()
STRUCTURED = {"content-type": "application/cloudevents+json"}


async def test_bodies_over_the_cap_are_refused_early_or_while_streaming(settings: Settings) -> None:
    big = b'{"url": "http://example.com/", "description": "' + b"x" * (2 * 1024 * 1024) + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b" " * 65536  # 2.5 MiB without a Content-Length

    async with smits(settings) as app:
        declared = await app.api.post("/v1/subscriptions", content=big, headers={"content-type": "application/json"})
        streamed = await app.api.post(
            "/v1/subscriptions", content=chunks(), headers={"content-type": "application/json"}
        )
        batch = orjson.dumps([orjson.loads(EXAMPLE)]) + b" " * (17 * 1024 * 1024)
        too_big_for_triggers = await app.api.post("/v1/triggers", content=batch, headers=STRUCTURED)
        fine_for_triggers = await app.api.post(
            "/v1/triggers", content=EXAMPLE + b" " * (1024 * 1024), headers=STRUCTURED
        )
    for response in (declared, streamed, too_big_for_triggers):
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"
    assert fine_for_triggers.status_code == 202  # the trigger route takes larger bodies than the default cap


async def test_ingest_is_rate_limited_per_key_with_retry_after(settings: Settings) -> None:
    async with smits(tuned(settings, ingest_rate_limit_per_s=0.5, ingest_rate_burst=3), ["ingest"]) as app:
        answers = [await app.api.post("/v1/triggers", content=EXAMPLE, headers=STRUCTURED) for _ in range(4)]
    assert [a.status_code for a in answers] == [202, 202, 202, 429]
    refused = answers[-1]
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= 1


async def test_a_key_over_its_rate_is_refused_before_its_request_is_parsed(settings: Settings) -> None:
    batch = orjson.dumps([orjson.loads(EXAMPLE) | {"id": f"evt-{n}"} for n in range(20)])
    batch_type = {"content-type": "application/cloudevents-batch+json"}
    async with smits(tuned(settings, ingest_rate_limit_per_s=0.5, ingest_rate_burst=5), ["ingest"]) as app:
        oversized = await app.api.post("/v1/triggers", content=batch, headers=batch_type)  # 20 > burst: on credit
        garbage = await app.api.post("/v1/triggers", content=b"{not json" * 1000, headers=STRUCTURED)
    assert oversized.status_code == 202
    assert garbage.status_code == 429  # not 400: the debt is checked before the body is read and parsed
    assert int(garbage.headers["retry-after"]) >= 30  # 15 events of debt + 1 at 0.5 a second


async def test_nul_characters_are_refused_anywhere_in_a_request(settings: Settings) -> None:
    async with smits(settings) as app:
        in_query = await app.api.get("/v1/reviews", params={"owner": "a\x00b"})
        in_path = await app.api.get("/v1/triggers//s%00x/1")
        in_body = await app.api.post(
            "/v1/subscriptions",
            content=b'{"url": "http://example.com/", "description": "a\\u0000b"}',
            headers={"content-type": "application/json"},
        )
        fine = await app.api.get("/v1/reviews", params={"owner": "a b"})
    for response in (in_query, in_path, in_body):
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/problem+json"
    assert fine.status_code == 200
