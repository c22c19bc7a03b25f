"""The console under a realistic database: `reviews` reviews opened by real triggers through ingest and the
engine, then each page read by a signed-in person (a browser session), timed from the client.

Figures are reported (BENCHMARKS.md), never asserted."""

from __future__ import annotations

import asyncio
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaProducer

from bench.infra import SMITS, Service, log, wait_for
from bench.stages import Database, StageResult, free_port, percentile, ready
from bench.workload import STRUCTURED, regulation

PERSON = "bench-manager@smits.example"
PASSWORD = "bench-console-password"  # noqa: S105  (a throwaway account in the bench's own database)
OWNED = 50
"""Reviews given to the signed-in person, so My work has rows."""


async def console(env: dict[str, str], kafka: str, db: Database, *, reviews: int, requests: int) -> StageResult:
    """`reviews` reviews (one regulation update each), then `requests` timed GETs of every console page."""
    roles = ["--role", "strategy_manager", "--role", "admin"]
    create_person = [SMITS, "users", "create", "--email", PERSON, "--name", "Bench Manager", *roles, "--password-stdin"]
    await asyncio.to_thread(
        subprocess.run, create_person, env=env, input=PASSWORD.encode(), check=True, capture_output=True
    )
    await _produce(kafka, env["SMITS_TOPIC_PREFIX"] + "triggers", reviews)
    port = free_port()
    service = Service(name="all", env={**env, "SMITS_AUTH_DISABLED": "false"}, tag="console", port=port)
    service.start()
    base = f"http://127.0.0.1:{port}"
    try:
        await ready(base, service)

        async def opened() -> bool:
            service.sample()
            return await db.count("engine_reviews") >= reviews and await db.count("engine_outbox") == 0

        await wait_for(opened, what=f"{reviews:,} reviews opened", timeout_s=max(300.0, reviews / 50))
        await db.value(
            f"UPDATE engine_reviews SET owner = '{PERSON}' WHERE id IN "
            f"(SELECT id FROM engine_reviews ORDER BY opened_at LIMIT {OWNED})"
        )
        some_review = await db.value("SELECT id FROM engine_reviews ORDER BY opened_at DESC LIMIT 1")
        timings = await _read_pages(base, _pages(str(some_review)), requests=requests, service=service)
    finally:
        service.stop()
    every = [ms for values in timings.values() for ms in values]
    by_page = {page: {"p50": percentile(ms, 50), "p95": percentile(ms, 95)} for page, ms in timings.items()}
    return StageResult(
        name="console",
        items=len(every),
        seconds=sum(every) / 1000,
        peak_rss_mib=service.peak_kib / 1024,
        extra={"reviews": reviews, "p50": percentile(every, 50), "p95": percentile(every, 95), "pages": by_page},
    )


def _pages(review_id: str) -> list[str]:
    return [
        "/",
        "/board",
        "/board?layout=table",
        "/board?layout=table&sort=due_at",
        "/board?layout=table&q=bench",
        "/board?layout=table&severity=medium&overdue=false",
        f"/reviews/{review_id}",
        "/triggers",
        "/policies",
        "/kpis",
        "/subscriptions",
        "/admin",
    ]


async def _read_pages(base: str, pages: list[str], *, requests: int, service: Service) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {page: [] for page in pages}
    async with httpx.AsyncClient(base_url=base, timeout=60) as browser:
        signed_in = await browser.post("/auth/login", json={"email": PERSON, "password": PASSWORD})
        signed_in.raise_for_status()
        for page in pages:
            first = await browser.get(page)
            if first.status_code != 200:
                raise RuntimeError(f"console page {page} answered {first.status_code}: {first.text[:300]}")
            for _ in range(requests):
                started = time.perf_counter()
                response = await browser.get(page)
                timings[page].append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
            service.sample()
            log(f"console {page}: p95 {percentile(timings[page], 95):.0f} ms")
    return timings


async def _produce(kafka: str, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=5)
    await producer.start()
    at = datetime.now(UTC).replace(microsecond=0)
    try:
        for n in range(count):
            event: dict[str, Any] = regulation("console", n, regulations=count, at=at)
            await producer.send(topic, value=orjson.dumps(event), key=event["subject"].encode(), headers=STRUCTURED)
        await producer.flush()
    finally:
        await producer.stop()
