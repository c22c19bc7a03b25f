"""smits measured as operators run it: each service a `smits serve` process on the bench's broker and database.

Throughput of a stage = records it handled / (time the last effect was visible - time of its first effect).
Its first effect is a timestamp smits itself stores (`received_at`, `decided_at`, `created_at`), so process
start-up is not counted; the end is when every effect is stored *and* published (outbox empty) or received.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaProducer
from standardwebhooks.webhooks import Webhook

from bench import raw
from bench.infra import Receiver, Service, asyncpg_dsn, log, wait_for
from bench.workload import STRUCTURED, Workload, regulation, regulation_in_fives, review_events
from services.notifier.signing import generate_secret


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Database:
    """Read-only probes of smits' tables (progress and the first-effect timestamps)."""

    def __init__(self, url: str) -> None:
        self.dsn = asyncpg_dsn(url)

    async def value(self, query: str) -> Any:
        connection = await asyncpg.connect(self.dsn)
        try:
            return await connection.fetchval(query)
        finally:
            await connection.close()

    async def count(self, table: str) -> int:
        return int(await self.value(f"SELECT count(*) FROM {table}"))

    async def first(self, table: str, column: str) -> float:
        at: datetime = await self.value(f"SELECT min({column}) FROM {table}")
        return at.timestamp()


async def watched(services: list[Service], done: Any, *, what: str, timeout_s: float) -> float:
    """Wait for `done()` while sampling the services' memory (and noticing if one died)."""

    async def check() -> bool:
        for service in services:
            service.sample()
        return bool(await done())

    return await wait_for(check, what=what, timeout_s=timeout_s)


@dataclass(kw_only=True)
class StageResult:
    name: str
    items: int
    seconds: float
    peak_rss_mib: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.items / self.seconds


async def ingest(env: dict[str, str], db: Database, workload: Workload, *, timeout_s: float) -> StageResult:
    service = Service(name="ingest", env=env, tag="throughput")
    service.start()
    total = len(workload.records)

    async def done() -> bool:
        return (
            await db.count("ingest_triggers") == workload.unique
            and await db.count("ingest_rejections") == workload.invalid
            and await db.count("ingest_duplicates") == workload.duplicates
            and await db.count("ingest_outbox") == 0
        )

    try:
        ended = await watched([service], done, what="ingest of the pre-filled topic", timeout_s=timeout_s)
    finally:
        service.stop()
    started = await db.first("ingest_triggers", "received_at")
    return StageResult(name="ingest", items=total, seconds=ended - started, peak_rss_mib=service.peak_kib / 1024)


async def engine(env: dict[str, str], db: Database, accepted: int, *, timeout_s: float) -> StageResult:
    service = Service(name="engine", env=env, tag="throughput")
    service.start()

    async def done() -> bool:
        return await db.count("engine_triggers") == accepted and await db.count("engine_outbox") == 0

    try:
        ended = await watched([service], done, what="engine on triggers.accepted", timeout_s=timeout_s)
    finally:
        service.stop()
    started = await db.first("engine_triggers", "decided_at")
    events = await db.count("engine_timeline")
    reviews = await db.count("engine_reviews")
    return StageResult(
        name="engine",
        items=accepted,
        seconds=ended - started,
        peak_rss_mib=service.peak_kib / 1024,
        extra={"events": events, "reviews": reviews},
    )


async def subscribe(base: str, url: str, event_types: list[str]) -> str:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{base}/v1/subscriptions", json={"url": url, "event_types": event_types})
        response.raise_for_status()
        secret: str = response.json()["secret"]
        return secret


async def ready(base: str, service: Service, *, timeout_s: float = 60) -> None:
    async def check() -> bool:
        service.sample()
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{base}/readyz", timeout=2)).status_code == 200
        except httpx.TransportError:
            return False

    await wait_for(check, what=f"smits serve {service.name} ready", timeout_s=timeout_s)


async def notifier(
    env: dict[str, str], kafka: str, db: Database, receiver: Receiver, *, events: int, timeout_s: float
) -> StageResult:
    """Deliver `events` pre-produced review events (five per review, in order) to one subscription made
    before the notifier starts (written to its table)."""
    await receiver.reset()
    await raw.produce_events(kafka, env["SMITS_TOPIC_PREFIX"] + "reviews.events", review_events(events))
    await _subscribe_directly(db, receiver.url + "/webhooks", ["review.*"])
    service = Service(name="notifier", env=env, tag="throughput")
    service.start()

    async def done() -> bool:
        return (await receiver.stats())["count"] >= events

    try:
        await watched([service], done, what="notifier delivering every review event", timeout_s=timeout_s)
    finally:
        service.stop()
    stats = await receiver.stats()
    started = await db.first("notifier_deliveries", "created_at")
    delivered = int(await db.value("SELECT count(*) FROM notifier_deliveries WHERE status = 'delivered'"))
    if int(stats["count"]) != events or delivered != events:
        raise RuntimeError(f"expected {events} webhooks, receiver got {stats['count']}, {delivered} delivered")
    return StageResult(
        name="notifier", items=events, seconds=stats["last"] - started, peak_rss_mib=service.peak_kib / 1024
    )


async def _subscribe_directly(db: Database, url: str, event_types: list[str]) -> str:
    """A subscription row as `POST /v1/subscriptions` would write it (the notifier is not running yet)."""
    secret = generate_secret()
    connection = await asyncpg.connect(db.dsn)
    try:
        await connection.execute(
            "INSERT INTO notifier_subscriptions (id, url, secret, event_types, categories, severities, scopes,"
            " enabled, created_at) VALUES (gen_random_uuid(), $1, $2, $3, '[]', '[]', '[]', true, now())",
            url,
            secret,
            orjson.dumps(event_types).decode(),
        )
    finally:
        await connection.close()
    return secret


@dataclass
class Pipeline:
    """The three services as separate processes, with HTTP ports known."""

    services: dict[str, Service]
    bases: dict[str, str]

    @classmethod
    async def start(cls, env: dict[str, str], tag: str) -> Pipeline:
        services, bases = {}, {}
        for name in ("ingest", "engine", "notifier"):
            port = free_port()
            services[name] = Service(name=name, env=env, tag=tag, port=port)
            bases[name] = f"http://127.0.0.1:{port}"
            services[name].start()
        pipeline = cls(services, bases)
        try:
            for name, service in services.items():
                await ready(bases[name], service)
        except BaseException:
            pipeline.stop()
            raise
        return pipeline

    def stop(self) -> None:
        for service in self.services.values():
            service.stop()

    def sample(self) -> dict[str, int]:
        return {name: service.sample() for name, service in self.services.items()}


async def steady(kafka: str, topic: str, *, rate: int, seconds: float, run: str, regulations: int) -> dict[str, float]:
    """Produce regulation updates at `rate`/s for `seconds`; returns trigger id -> time.time() at send."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=0)
    await producer.start()
    sent: dict[str, float] = {}
    at = datetime.now(UTC).replace(microsecond=0)
    tick = 0.01
    per_tick = rate * tick
    started = time.monotonic()
    n = 0
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed / tick * per_tick) + int(per_tick)
            while n < due:
                event = regulation(run, n, regulations=regulations, at=at)
                sent[event["id"]] = time.time()
                await producer.send(topic, value=orjson.dumps(event), key=event["subject"].encode(), headers=STRUCTURED)
                n += 1
            await asyncio.sleep(tick - (time.monotonic() - started) % tick)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def percentile(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[round(p * 10) - 1] if len(values) > 1 else values[0]


async def latency(
    env: dict[str, str], kafka: str, receiver: Receiver, *, rate: int, seconds: float, run: str, timeout_s: float
) -> StageResult:
    """Produce → signed webhook received, at a steady rate, all three services running."""
    pipeline = await Pipeline.start(env, tag="latency")
    try:
        secret = await subscribe(pipeline.bases["notifier"], receiver.url + "/webhooks", ["review.*"])
        await receiver.reset(record=True)
        topic = env["SMITS_TOPIC_PREFIX"] + "triggers"
        log(f"latency: producing {rate}/s for {seconds:.0f} s")
        sent = await steady(kafka, topic, rate=rate, seconds=seconds, run=run, regulations=max(1, rate * 2))

        async def done() -> bool:
            pipeline.sample()
            return (await receiver.stats())["count"] >= len(sent)

        await wait_for(done, what="every latency webhook", timeout_s=timeout_s)
        records = await receiver.dump()
    finally:
        pipeline.stop()
    verifier = Webhook(secret)
    latencies = []
    for record in records:
        headers: dict[str, str] = record["headers"]  # type: ignore[assignment]
        body: str = record["body"]  # type: ignore[assignment]
        payload = verifier.verify(body, headers)  # raises on a bad signature
        trigger_id = payload["data"]["trigger"]["id"]
        latencies.append((float(record["at"]) - sent[trigger_id]) * 1000)  # type: ignore[arg-type]
    if len(latencies) != len(sent):
        raise RuntimeError(f"{len(sent)} triggers produced, {len(latencies)} webhooks received")
    peak = {name: service.peak_kib / 1024 for name, service in pipeline.services.items()}
    return StageResult(
        name="latency",
        items=len(sent),
        seconds=seconds,
        peak_rss_mib=max(peak.values()),
        extra={
            "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95),
            "p99": percentile(latencies, 99),
            "max": max(latencies),
            "peak_by_service": peak,
        },
    )


async def soak(
    env: dict[str, str],
    kafka: str,
    db: Database,
    receiver: Receiver,
    *,
    total: int,
    rate: int,
    run: str,
    timeout_s: float,
) -> StageResult:
    """`total` triggers at `rate`/s through all three services; RSS sampled as it goes."""
    pipeline = await Pipeline.start(env, tag="soak")
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        await subscribe(pipeline.bases["notifier"], receiver.url + "/webhooks", ["review.opened"])
        await receiver.reset()
        topic = env["SMITS_TOPIC_PREFIX"] + "triggers"
        producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=20, max_batch_size=512 * 1024)
        await producer.start()
        at = datetime.now(UTC).replace(microsecond=0)
        try:
            for second in range(0, (total + rate - 1) // rate):
                begin = time.monotonic()
                for n in range(second * rate, min(total, (second + 1) * rate)):
                    event = regulation_in_fives(run, n, at=at)
                    await producer.send(
                        topic, value=orjson.dumps(event), key=event["subject"].encode(), headers=STRUCTURED
                    )
                if second % 10 == 0:
                    rss = pipeline.sample()
                    samples.append({"at_s": time.monotonic() - started, "produced": (second + 1) * rate, **rss})
                    log(f"soak: {min(total, (second + 1) * rate):,} produced; RSS KiB {rss}")
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - begin)))
            await producer.flush()
        finally:
            await producer.stop()

        async def done() -> bool:
            rss = pipeline.sample()
            if int(time.monotonic() - started) % 10 == 0:
                samples.append({"at_s": time.monotonic() - started, "produced": total, **rss})
            return await db.count("engine_triggers") == total and await db.count("engine_outbox") == 0

        await wait_for(done, what="soak drained through the engine", timeout_s=timeout_s, every_s=1.0)
        opened = await db.count("engine_reviews")
        await wait_for(
            lambda: _received_at_least(receiver, opened), what="soak webhooks", timeout_s=timeout_s, every_s=1.0
        )
        samples.append({"at_s": time.monotonic() - started, "produced": total, **pipeline.sample()})
    finally:
        pipeline.stop()
    peak = {name: service.peak_kib / 1024 for name, service in pipeline.services.items()}
    return StageResult(
        name="soak",
        items=total,
        seconds=time.monotonic() - started,
        peak_rss_mib=max(peak.values()),
        extra={"samples": samples, "peak_by_service": peak},
    )


async def _received_at_least(receiver: Receiver, count: int) -> bool:
    return (await receiver.stats())["count"] >= count
