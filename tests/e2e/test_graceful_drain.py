"""SIGTERM while ingest has batches in flight: exit 0 in the grace period, no offset ahead of stored work."""

from __future__ import annotations

import signal
import subprocess
import time

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import func, select

from services.contracts import topics
from services.core.db import UnitOfWork, create_engine
from services.core.settings import Settings
from services.trigger_ingest.persistence import AcceptedTriggerRow
from tests.support.kafka import Raw, produce_raw
from tests.support.processes import SMITS, service_env
from tests.support.waiting import eventually

TOTAL = 20_000
GRACE_S = 20
STRUCTURED = [("content-type", b"application/cloudevents+json")]
DATA = {"objective_id": "O", "period": "2027-Q1", "new_target": "t", "owner": "cio"}


def _event(n: int) -> Raw:
    event = {
        "specversion": "1.0",
        "id": f"e{n}",
        "source": "/drain",
        "type": "smits.trigger.goal_change.v1",
        "subject": f"bu-{n % 11}",
        "data": DATA,
    }
    return Raw(orjson.dumps(event), STRUCTURED, f"bu-{n % 11}".encode())


def _spawn(settings: Settings) -> subprocess.Popen[bytes]:
    env = service_env(settings, SMITS_CONSUMER_MAX_RECORDS="2000", SMITS_SHUTDOWN_GRACE_S=str(GRACE_S))
    return subprocess.Popen([SMITS, "serve", "ingest", "--port", "0"], env=env, stderr=subprocess.PIPE)


def _stop(process: subprocess.Popen[bytes]) -> tuple[int, float, str]:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=GRACE_S + 15)
    return process.returncode, time.monotonic() - started, stderr.decode()


async def _committed(settings: Settings) -> dict[int, int]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=f"{settings.topic_prefix}ingest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        name = settings.topic(topics.TRIGGERS)
        result = {}
        for partition in range(settings.topic_partitions):
            result[partition] = await consumer.committed(TopicPartition(name, partition)) or 0
        return result
    finally:
        await consumer.stop()


async def test_sigterm_mid_batch_drains_and_commits_nothing_past_stored_work(settings: Settings) -> None:
    await produce_raw(settings, topics.TRIGGERS, [_event(n) for n in range(TOTAL)])
    engine = create_engine(settings.database_url.get_secret_value())
    uow = UnitOfWork(engine)

    async def stored() -> int:
        async with uow.begin() as session:
            return int(await session.scalar(select(func.count()).select_from(AcceptedTriggerRow)) or 0)

    process = _spawn(settings)
    await eventually(stored, lambda n: n > 0, within=60, what="the first batch stored")
    code, took, logs = _stop(process)
    assert code == 0, logs[-2000:]
    assert took < GRACE_S
    assert '"event": "draining"' in logs
    committed = await _committed(settings)
    async with uow.begin() as session:
        for partition, offset in committed.items():
            below = await session.scalar(
                select(func.count())
                .select_from(AcceptedTriggerRow)
                .where(AcceptedTriggerRow.kafka_partition == partition, AcceptedTriggerRow.kafka_offset < offset)
            )
            assert below == offset, f"partition {partition}: committed {offset} but only {below} stored before it"
    stored_at_stop = await stored()
    assert stored_at_stop < TOTAL  # the test really stopped it mid-run

    restarted = _spawn(settings)
    try:
        await eventually(stored, lambda n: n == TOTAL, within=120, what="everything after the restart")
    finally:
        assert _stop(restarted)[0] == 0
    await engine.dispose()
