"""smits measured as operators run it: each service a `smits serve` process on the bench's broker and database.

Throughput of a stage = records it handled / (time the last effect was visible - time of its first effect).
Its first effect is a timestamp smits itself stores (`received_at`, `decided_at`, `created_at`), so process
start-up is not counted; the end is when every effect is stored *and* published (outbox empty) or received.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaProducer
from standardwebhooks.webhooks import Webhook

from bench import cpu, raw
from bench.infra import Receiver, Service, Stack, asyncpg_dsn, log, wait_for
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

    async def counted(self, table: str, expected: int) -> bool:
        """Whether `table` (with a unique integer `id`) holds exactly `expected` rows. Counting a table of
        200,000 rows four times a second is Postgres CPU the bench would take from the stage it measures (about
        5 s of it in a one-minute engine stage), so it counts only once the span of ids, read from the primary
        key, says the count can have been reached (unique integers: the count is never above the span)."""
        span = await self.value(f"SELECT max(id) - min(id) + 1 FROM {table}")
        if span is None:
            return expected == 0
        return int(span) >= expected and await self.count(table) == expected

    async def rows(self, query: str) -> list[tuple[Any, ...]]:
        connection = await asyncpg.connect(self.dsn)
        try:
            return [tuple(record) for record in await connection.fetch(query)]
        finally:
            await connection.close()

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


def _services(name: str, env: dict[str, str], tag: str, processes: int) -> list[Service]:
    """`processes` `smits serve NAME` processes (one consumer group: Kafka shares the partitions out)."""
    if processes == 1:
        return [Service(name=name, env=env, tag=tag)]
    return [Service(name=name, env=env, tag=f"{tag}{n}") for n in range(1, processes + 1)]


def _start(services: list[Service]) -> None:
    for service in services:
        service.start()


def _stop(services: list[Service]) -> float:
    """Stop the services; the CPU seconds they spent, start-up included (read just before stopping)."""
    spent = sum(cpu.process(service.pid) for service in services)
    for service in services:
        service.stop()
    return spent


async def ingest(
    env: dict[str, str],
    db: Database,
    workload: Workload,
    *,
    timeout_s: float,
    processes: int = 1,
    tag: str = "throughput",
) -> StageResult:
    services = _services("ingest", env, tag, processes)
    _start(services)
    total = len(workload.records)

    async def done() -> bool:
        return (
            await db.counted("ingest_triggers", workload.unique)
            and await db.count("ingest_rejections") == workload.invalid
            and await db.count("ingest_duplicates") == workload.duplicates
            and await db.count("ingest_outbox") == 0
        )

    try:
        ended = await watched(services, done, what="ingest of the pre-filled topic", timeout_s=timeout_s)
    finally:
        spent = _stop(services)
    started = await db.first("ingest_triggers", "received_at")
    peak = max(service.peak_kib for service in services) / 1024
    return StageResult(name="ingest", items=total, seconds=ended - started, peak_rss_mib=peak, extra={"cpu_s": spent})


async def engine(
    env: dict[str, str],
    db: Database,
    accepted: int,
    *,
    timeout_s: float,
    processes: int = 1,
    tag: str = "throughput",
) -> StageResult:
    services = _services("engine", env, tag, processes)
    _start(services)

    async def done() -> bool:
        return await db.counted("engine_triggers", accepted) and await db.count("engine_outbox") == 0

    try:
        ended = await watched(services, done, what="engine on triggers.accepted", timeout_s=timeout_s)
    finally:
        spent = _stop(services)
    started = await db.first("engine_triggers", "decided_at")
    events = await db.count("engine_timeline")
    reviews = await db.count("engine_reviews")
    return StageResult(
        name="engine",
        items=accepted,
        seconds=ended - started,
        peak_rss_mib=max(service.peak_kib for service in services) / 1024,
        extra={"events": events, "reviews": reviews, "cpu_s": spent},
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
    env: dict[str, str],
    kafka: str,
    db: Database,
    receiver: Receiver,
    *,
    events: int,
    timeout_s: float,
    tag: str = "throughput",
) -> StageResult:
    """Deliver `events` pre-produced review events (five per review, in order) to one subscription made
    before the notifier starts (written to its table)."""
    await receiver.reset()
    await raw.produce_events(kafka, env["SMITS_TOPIC_PREFIX"] + "reviews.events", review_events(events))
    await _subscribe_directly(db, receiver.url + "/webhooks", ["review.*"])
    service = Service(name="notifier", env=env, tag=tag)
    service.start()

    async def done() -> bool:
        return (await receiver.stats())["count"] >= events

    try:
        await watched([service], done, what="notifier delivering every review event", timeout_s=timeout_s)
    finally:
        spent = _stop([service])
    stats = await receiver.stats()
    started = await db.first("notifier_deliveries", "created_at")
    delivered = int(await db.value("SELECT count(*) FROM notifier_deliveries WHERE status = 'delivered'"))
    if int(stats["count"]) != events or delivered != events:
        raise RuntimeError(f"expected {events} webhooks, receiver got {stats['count']}, {delivered} delivered")
    return StageResult(
        name="notifier",
        items=events,
        seconds=stats["last"] - started,
        peak_rss_mib=service.peak_kib / 1024,
        extra={"cpu_s": spent},
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


HOPS = (
    ("produce → ingest", "sent", "ingested"),
    ("ingest → engine", "ingested", "decided"),
    ("engine → notifier", "decided", "planned"),
    ("notifier → receiver", "planned", "arrived"),
)
"""Per-hop latency: from the producer's send, through the times smits stores (ingest's `received_at`, the
engine's `decided_at`, the notifier's delivery `created_at`), to the receiver's arrival time."""
COUNTED = ("ingest", "engine", "notifier", "postgres", "kafka", "receiver")
"""The processes CPU per trigger counts; the bench's own process (the producer) is reported beside them."""


def cpu_meter(pipeline: Pipeline, stack: Stack, receiver: Receiver) -> cpu.Meter:
    groups: dict[str, Callable[[], float]] = {
        name: partial(cpu.process, service.pid) for name, service in pipeline.services.items()
    }
    postgres, kafka = stack.postgres_pid(), stack.kafka_pid()
    if postgres is None or kafka is None:
        log(f"CPU per trigger: postmaster pid {postgres}, Kafka pid {kafka}; a missing one is left out")
    if postgres is not None:
        groups["postgres"] = partial(cpu.tree, postgres)
    if kafka is not None:
        groups["kafka"] = partial(cpu.process, kafka)
    groups["receiver"] = partial(cpu.process, receiver.process.pid)
    groups["bench"] = partial(cpu.process, os.getpid(), children=False)
    return cpu.Meter(groups)


async def latency(
    env: dict[str, str],
    stack: Stack,
    db: Database,
    receiver: Receiver,
    *,
    rate: int,
    seconds: float,
    run: str,
    timeout_s: float,
    tag: str = "latency",
) -> StageResult:
    """Produce → signed webhook received, at a steady rate, all three services running; per-hop latency from
    the stored timestamps, and the CPU time every process spent from the first send to the last webhook."""
    pipeline = await Pipeline.start(env, tag=tag)
    try:
        secret = await subscribe(pipeline.bases["notifier"], receiver.url + "/webhooks", ["review.*"])
        await receiver.reset(record=True)
        topic = env["SMITS_TOPIC_PREFIX"] + "triggers"
        meter = cpu_meter(pipeline, stack, receiver)
        log(f"latency: producing {rate}/s for {seconds:.0f} s")
        meter.start()
        producing = time.monotonic()
        sent = await steady(stack.kafka, topic, rate=rate, seconds=seconds, run=run, regulations=max(1, rate * 2))
        produced_per_s = len(sent) / (time.monotonic() - producing)

        async def done() -> bool:
            pipeline.sample()
            return (await receiver.stats())["count"] >= len(sent)

        await wait_for(done, what="every latency webhook", timeout_s=timeout_s)
        spent = meter.delta()
        records = await receiver.dump()
    finally:
        pipeline.stop()
    verifier = Webhook(secret)
    arrivals: list[tuple[str, str, float]] = []  # (trigger id, webhook id, arrival)
    for record in records:
        headers: dict[str, str] = record["headers"]  # type: ignore[assignment]
        body: str = record["body"]  # type: ignore[assignment]
        payload = verifier.verify(body, headers)  # raises on a bad signature
        arrivals.append((payload["data"]["trigger"]["id"], headers["webhook-id"], float(record["at"])))  # type: ignore[arg-type]
    if len(arrivals) != len(sent) or {trigger for trigger, _, _ in arrivals} != set(sent):
        raise RuntimeError(f"{len(sent)} triggers produced, {len(arrivals)} webhooks received (one each expected)")
    latencies = [(at - sent[trigger]) * 1000 for trigger, _, at in arrivals]
    peak = {name: service.peak_kib / 1024 for name, service in pipeline.services.items()}
    counted = [name for name in COUNTED if name in spent]
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
            "produced_per_s": produced_per_s,
            "hops": await hops(db, sent, arrivals),
            "cpu_s": spent,
            "cpu_ms_per_trigger": cpu.per_item_ms(spent, len(sent), counted=counted),
            "cpu_counted": counted,
            "peak_by_service": peak,
        },
    )


async def hops(db: Database, sent: dict[str, float], arrivals: list[tuple[str, str, float]]) -> dict[str, Any]:
    """p50 and p99 of each hop in `HOPS`, in ms, over every trigger; a timestamp that cannot be read (a
    column smits no longer stores) leaves its hops out, with the reason, instead of failing the run."""
    times: dict[str, dict[str, float]] = {
        "sent": sent,
        "arrived": {trigger: at for trigger, _, at in arrivals},
    }
    queries = {
        "ingested": "SELECT event_id, received_at FROM ingest_triggers",
        "decided": "SELECT event_id, decided_at FROM engine_triggers",
        "planned": "SELECT msg_id, created_at FROM notifier_deliveries",
    }
    missing: dict[str, str] = {}
    for point, query in queries.items():
        try:
            stored = {key: at.timestamp() for key, at in await db.rows(query)}
        except asyncpg.PostgresError as exc:
            missing[point] = str(exc)
            continue
        if point == "planned":  # keyed by the webhook id (msg_id): back to the trigger it carries
            stored = {trigger: stored[msg_id] for trigger, msg_id, _ in arrivals if msg_id in stored}
        times[point] = stored
    result: dict[str, Any] = {}
    for name, start, end in HOPS:
        if start not in times or end not in times:
            continue
        ms = [(times[end][t] - times[start][t]) * 1000 for t in sent if t in times[start] and t in times[end]]
        if len(ms) != len(sent):
            missing[name] = f"{len(sent) - len(ms)} of {len(sent)} triggers without both timestamps"
        if ms:
            result[name] = {"p50": percentile(ms, 50), "p99": percentile(ms, 99)}
    if missing:
        result["missing"] = missing
    return result


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
            return await db.counted("engine_triggers", total) and await db.count("engine_outbox") == 0

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
