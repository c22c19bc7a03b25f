"""The raw limits of the stack, measured in the same run on the same data (the denominators)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import aiohttp
import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.infra import asyncpg_dsn
from bench.workload import STRUCTURED, Workload
from services.core.kafka import MAX_MESSAGE_BYTES


async def produce(kafka: str, topic: str, workload: Workload) -> float:
    """Pre-fill `topic` (not timed as a smits figure); returns records per second."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for record in workload.records:
            pending.append(await producer.send(topic, value=record.value, key=record.key, headers=STRUCTURED))
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return len(workload.records) / (time.perf_counter() - started)


async def produce_events(kafka: str, topic: str, events: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        headers = [("content-type", b"application/json"), ("smits-schema", b"ReviewEvent.v1")]
        await asyncio.gather(*[await producer.send(topic, value=v, key=k, headers=headers) for k, v in events])
    finally:
        await producer.stop()


async def consume(kafka: str, topic: str, total: int, *, batch: int) -> float:
    """aiokafka `getmany` over the whole pre-filled topic, as smits' consumer is configured; records/s."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
        fetch_max_bytes=32 * MAX_MESSAGE_BYTES,
    )
    await consumer.start()
    try:
        seen = 0
        started = time.perf_counter()
        while seen < total:
            fetched = await consumer.getmany(timeout_ms=200, max_records=batch)
            seen += sum(len(records) for records in fetched.values())
        return total / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def copy(database_url: str, workload: Workload, *, batch: int) -> float:
    """asyncpg `copy_records_to_table` of rows equivalent to the stored triggers, into a table with the same
    columns and indexes as `ingest_triggers`, one transaction per `batch` rows (as smits commits); rows/s."""
    now = datetime.now(UTC)
    rows = []
    for offset, record in enumerate(workload.records):
        if record.trigger_id is None:
            continue
        event = orjson.loads(record.value)
        category = event["type"].split(".")[2]
        rows.append(
            (
                event["source"],
                event["id"],
                event["type"],
                category,
                "medium",
                event["subject"],
                datetime.fromisoformat(event["time"]),
                now,
                orjson.dumps(event["data"]).decode(),
                offset % 3,
                offset,
            )
        )
    unique = list({(row[0], row[1]): row for row in rows}.values())
    columns = [
        "source",
        "event_id",
        "type",
        "category",
        "severity",
        "subject",
        "occurred_at",
        "received_at",
        "data",
        "kafka_partition",
        "kafka_offset",
    ]
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await connection.execute("DROP TABLE IF EXISTS raw_copy")
        await connection.execute("CREATE TABLE raw_copy (LIKE ingest_triggers INCLUDING ALL)")
        started = time.perf_counter()
        for start in range(0, len(unique), batch):
            async with connection.transaction():
                await connection.copy_records_to_table(
                    "raw_copy", records=unique[start : start + batch], columns=columns
                )
        rate = len(unique) / (time.perf_counter() - started)
        await connection.execute("DROP TABLE raw_copy")
        return rate
    finally:
        await connection.close()


CLIENTS = ("httpx", "aiohttp")
CONCURRENCIES = (1, 10, 50)


async def post_loop(url: str, body: bytes, total: int, *, concurrency: int, client: str = "httpx") -> float:
    """`concurrency` loops of one HTTP client POSTing `body` to the receiver, `total` requests in all, each
    response read to its end and its status checked; requests/s."""
    if client == "aiohttp":
        return await _aiohttp_loop(url, body, total, concurrency=concurrency)
    return await _httpx_loop(url, body, total, concurrency=concurrency)


async def _httpx_loop(url: str, body: bytes, total: int, *, concurrency: int) -> float:
    remaining = total

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            response = await client.post(url, content=body, headers={"content-type": "application/json"})
            response.raise_for_status()

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return total / (time.perf_counter() - started)


async def _aiohttp_loop(url: str, body: bytes, total: int, *, concurrency: int) -> float:
    remaining = total
    headers = {"content-type": "application/json"}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                await response.read()
                response.raise_for_status()

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return total / (time.perf_counter() - started)
