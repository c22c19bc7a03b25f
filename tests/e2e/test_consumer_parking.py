"""A record the engine's flow keeps failing on parks its partition, visibly, in a `smits serve engine`
process; the other partitions keep flowing; `smits consumer resume` retries it or moves past it."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from services.contracts import topics
from services.core import positions
from services.core.db import UnitOfWork, create_engine
from services.core.settings import Settings
from services.strategy_engine.persistence import DecidedTriggerRow
from tests.support.events import accepted
from tests.support.processes import SMITS, free_port, service_env
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 9, 1, tzinfo=UTC)


async def _produce(settings: Settings, partition: int, ids: Sequence[str]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for event_id in ids:  # one by one: offsets follow the list
            doc = accepted("goal_change", event_id, at=T0, subject=f"bu-{event_id}", objective_id=event_id)
            await producer.send_and_wait(
                settings.topic(topics.TRIGGERS_ACCEPTED), orjson.dumps(doc), key=b"k", partition=partition
            )
    finally:
        await producer.stop()


def _spawn(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    """`smits serve engine` with the test-only fault of `tests.support.faulty`."""
    command = [sys.executable, "-m", "tests.support.faulty", "serve", "engine", "--port", str(port)]
    return subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)


def _resume(env: dict[str, str], parked: dict[str, Any], *more: str) -> str:
    where = ["--group", parked["group"], "--topic", parked["topic"], "--partition", str(parked["partition"])]
    result = subprocess.run(
        [SMITS, "consumer", "resume", *where, *more], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_a_failing_record_parks_its_partition_until_an_operator_retries_or_skips_it(
    settings: Settings, tmp_path: Path
) -> None:
    poison = tmp_path / "poison"
    poison.write_text("poison-1\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(
        settings,
        SMITS_CONSUMER_MAX_ATTEMPTS="2",
        SMITS_CONSUMER_RETRY_BACKOFF_S="0.05",
        SMITS_TEST_POISON_FILE=str(poison),
    )
    db = create_engine(settings.database_url.get_secret_value())
    uow = UnitOfWork(engine=db)

    async def stored() -> list[str]:
        async with uow.begin() as session:
            return sorted((await session.scalars(select(DecidedTriggerRow.event_id))).all())

    async def parked_rows() -> list[positions.Position]:
        async with uow.begin() as session:
            return await positions.parked(session)

    async def ready() -> httpx.Response:
        async with httpx.AsyncClient(timeout=5) as client:
            try:
                return await client.get(f"{base}/readyz")
            except httpx.TransportError:
                return httpx.Response(599)

    async def parked_metric() -> dict[str, float]:
        async with httpx.AsyncClient(timeout=5) as client:
            text = (await client.get(f"{base}/metrics")).text
        return {
            sample.labels["partition"]: sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "smits_consumer_parked_partitions"
            for sample in family.samples
            if sample.labels["group"] == settings.topic("engine")
        }

    expected = {f"p{p}-{n}" for p in (0, 2) for n in range(4)} | {"p1-0", "p1-1"}
    await _produce(settings, 0, [f"p0-{n}" for n in range(4)])
    await _produce(settings, 1, ["p1-0", "p1-1", "poison-1", "p1-2", "p1-3"])
    await _produce(settings, 2, [f"p2-{n}" for n in range(4)])
    process = _spawn(env, port)
    try:
        not_ready = await eventually(ready, lambda r: r.status_code == 503 and r.json()["parked_partitions"], within=60)
        assert not_ready.headers["content-type"] == "application/problem+json"
        [parked] = not_ready.json()["parked_partitions"]
        assert parked == {
            "group": settings.topic("engine"),
            "topic": settings.topic(topics.TRIGGERS_ACCEPTED),
            "partition": 1,
            "offset": 2,
            "error": "Poisoned: poisoned record poison-1",
        }
        assert "partition 1 at offset 2" in not_ready.json()["detail"]
        assert (await parked_metric())["1"] == 1.0
        assert set(await eventually(stored, lambda ids: set(ids) == expected, what="all but partition 1's tail"))

        # The other partitions keep flowing while partition 1 is parked.
        await _produce(settings, 0, ["p0-4"])
        await _produce(settings, 2, ["p2-4"])
        expected |= {"p0-4", "p2-4"}
        await eventually(stored, lambda ids: set(ids) == expected, what="the other partitions")

        # Resume without --skip-offset while the fault is still there: retried, and parked again.
        first = (await parked_rows())[0].parked_at
        assert "retrying offset 2" in _resume(env, parked)
        again = await eventually(
            parked_rows, lambda rows: len(rows) == 1 and rows[0].parked_at != first, what="parked again"
        )
        assert again[0].next_offset == 2

        # The fault is lifted: resuming retries the record and the partition's tail follows it.
        poison.write_text("")
        _resume(env, parked)
        expected |= {"poison-1", "p1-2", "p1-3"}
        await eventually(stored, lambda ids: set(ids) == expected, what="partition 1 after the retry")
        await eventually(ready, lambda r: r.status_code == 200, what="ready again")
        assert (await parked_metric())["1"] == 0.0

        # A second failing record, skipped by the operator: never applied, the record after it is.
        poison.write_text("poison-2\n")
        await _produce(settings, 1, ["poison-2", "p1-4"])
        not_ready = await eventually(ready, lambda r: r.status_code == 503 and r.json()["parked_partitions"], within=60)
        assert not_ready.json()["parked_partitions"][0]["offset"] == 5
        assert "skipping offset 5" in _resume(env, parked, "--skip-offset")
        expected |= {"p1-4"}
        await eventually(stored, lambda ids: set(ids) == expected, what="partition 1 past the skipped record")
        await eventually(ready, lambda r: r.status_code == 200, what="ready after the skip")
        await asyncio.sleep(1.0)  # nothing more arrives late
        final = await stored()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        await db.dispose()
    assert process.returncode == 0
    assert sorted(final) == sorted(expected)  # nothing lost, nothing applied twice, the skipped one absent
    assert "poison-2" not in final
