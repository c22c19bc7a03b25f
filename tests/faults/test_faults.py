"""Kill, stop, partition and restart things under load, then count: nothing lost, nothing duplicated.

Each scenario runs ingest, engine and notifier as separate OS processes on a dedicated Postgres and Kafka,
sends its workload in waves (disrupting as it goes), waits, and checks exact counts (see `verify`)."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from services.core.db import UnitOfWork, create_engine
from services.core.settings import Settings
from services.notifier.persistence import AttemptRow
from tests.faults.cluster import SERVICES, Cluster
from tests.faults.conftest import ROOT, Infra
from tests.faults.proxy import StallingProxy
from tests.faults.workload import Workload, build, produce, progress, verify, wait_until_done
from tests.support.processes import SMITS
from tests.support.receiver import Receiver
from tests.support.subscriptions import subscribe_directly
from tests.support.waiting import eventually

SCHEDULE = "0,0.2,0.5,1,1,2,2,2,2,2,2,2,2,2,2"
WAVES = 6


@dataclass
class Scenario:
    infra: Infra
    cluster: Cluster
    receiver: Receiver
    uow: UnitOfWork
    rng: random.Random
    notes: list[str] = field(default_factory=list)


Disruption = Callable[[Scenario, int], Awaitable[None]]


def _waves(workload: Workload, count: int) -> list[Workload]:
    def part(items: list[bytes], n: int) -> list[bytes]:
        return items[n::count]

    return [
        replace(
            workload,
            valid=part(workload.valid, n),
            repeats=part(workload.repeats, n),
            invalid=part(workload.invalid, n),
        )
        for n in range(count)
    ]


def _cli(env: dict[str, str], *command: str) -> None:
    subprocess.run([SMITS, *command], env={**os.environ, **env}, check=True, capture_output=True, timeout=120)


async def run(
    dedicated: Infra,
    tmp_path: Path,
    size: int,
    prefix: str,
    disrupt: Disruption,
    *,
    bootstrap: str | None = None,
) -> tuple[Scenario, dict[str, int]]:
    within = max(240.0, size / 40)  # full-size runs need longer
    seed = int(os.environ.get("SMITS_FAULTS_SEED", random.randrange(1_000_000)))
    print(f"seed={seed} size={size}")
    database = await dedicated.new_database()
    env = {
        "SMITS_DATABASE_URL": database,
        "SMITS_KAFKA_BOOTSTRAP": bootstrap or dedicated.kafka,
        "SMITS_TOPIC_PREFIX": prefix,
        "SMITS_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8",
        "SMITS_DELIVERY_RETRY_SCHEDULE": SCHEDULE,
        "SMITS_DELIVERY_LEASE_S": "3",
        "SMITS_DELIVERY_TIMEOUT_S": "2",
        "SMITS_SHUTDOWN_GRACE_S": "10",
        "SMITS_CONSUMER_FETCH_TIMEOUT_MS": "100",
    }
    for command in (["migrate"], ["topics", "create"]):
        await asyncio.to_thread(_cli, env, *command)
    settings = Settings(database_url=database, kafka_bootstrap=env["SMITS_KAFKA_BOOTSTRAP"], topic_prefix=prefix)
    workload = build(size, seed)
    engine = create_engine(database)
    uow = UnitOfWork(engine)
    with Receiver(delay_s=0.002) as receiver:
        await subscribe_directly(uow, receiver.url, description="faults")
        cluster = Cluster(env=env, logs=tmp_path)
        scenario = Scenario(dedicated, cluster, receiver, uow, random.Random(seed))
        cluster.start_all()
        try:
            invalid: set[tuple[int, int]] = set()
            for number, wave in enumerate(_waves(workload, WAVES)):
                invalid |= await produce(settings, wave, seed + number)
                if number == 0:  # disrupt a running pipeline, not processes still starting up
                    await eventually(
                        lambda: progress(uow, receiver),
                        lambda s: s["webhooks"] > 0,
                        within=90,
                        what="the first webhook",
                    )
                await disrupt(scenario, number)
            state = await wait_until_done(uow, receiver, workload, within=within)
            await asyncio.sleep(1.0)  # anything late (a resend after a kill) arrives before counting
            print(f"done: {state} kills={cluster.kills} notes={scenario.notes}")
        finally:
            codes = cluster.stop_all()
        await verify(uow, receiver, settings, workload, invalid)
    await engine.dispose()
    return scenario, codes


async def test_kill_9_of_each_service_several_times(dedicated: Infra, tmp_path: Path, size: int, prefix: str) -> None:
    async def disrupt(s: Scenario, wave: int) -> None:
        await asyncio.sleep(s.rng.uniform(0.0, 0.8))
        name = SERVICES[wave % len(SERVICES)]
        s.cluster.kill(name)
        await asyncio.sleep(s.rng.uniform(0.2, 1.2))
        s.cluster.start(name)

    scenario, _ = await run(dedicated, tmp_path, size, prefix, disrupt)
    assert sorted(scenario.cluster.kills) == sorted(SERVICES * 2)


async def test_kill_9_of_the_broker_and_restart(dedicated: Infra, tmp_path: Path, size: int, prefix: str) -> None:
    async def disrupt(s: Scenario, wave: int) -> None:
        if wave == 2:
            await asyncio.sleep(0.5)
            await asyncio.to_thread(s.infra.kill_kafka)
            s.notes.append(f"broker killed at {await progress(s.uow, s.receiver)}")
            await asyncio.sleep(3)
            await asyncio.to_thread(s.infra.start_kafka)

    scenario, codes = await run(dedicated, tmp_path, size, prefix, disrupt)
    assert scenario.notes
    assert set(codes.values()) == {0}  # they reconnected by themselves and still drain cleanly


async def test_postgres_immediate_restart(dedicated: Infra, tmp_path: Path, size: int, prefix: str) -> None:
    async def disrupt(s: Scenario, wave: int) -> None:
        if wave in (1, 4):
            await asyncio.sleep(0.3)
            await asyncio.to_thread(s.infra.crash_restart_postgres)
            s.notes.append(f"postgres restarted at {await progress(s.uow, s.receiver)}")

    scenario, codes = await run(dedicated, tmp_path, size, prefix, disrupt)
    assert len(scenario.notes) == 2
    assert set(codes.values()) == {0}


async def test_webhook_receiver_down_then_back(dedicated: Infra, tmp_path: Path, size: int, prefix: str) -> None:
    async def disrupt(s: Scenario, wave: int) -> None:
        if wave == 1:
            s.receiver.down()
            await asyncio.sleep(4)
            s.receiver.up()

    scenario, _ = await run(dedicated, tmp_path, size, prefix, disrupt)
    async with scenario.uow.begin() as session:
        attempts = (
            await session.execute(
                select(AttemptRow.delivery_id, AttemptRow.attempted_at).order_by(AttemptRow.delivery_id, AttemptRow.id)
            )
        ).all()
    delays = [float(d) for d in SCHEDULE.split(",")]
    by_delivery: dict[object, list[object]] = {}
    for delivery_id, at in attempts:
        by_delivery.setdefault(delivery_id, []).append(at)
    retried = [times for times in by_delivery.values() if len(times) > 1]
    assert retried, "the receiver being down caused no retries"
    for times in retried:
        for n in range(1, len(times)):
            gap = times[n] - times[n - 1]  # type: ignore[operator]
            assert gap >= timedelta(seconds=delays[n] * 0.95), f"attempt {n + 1} came after {gap}"


async def test_sigterm_of_each_service_drains_without_redelivery(
    dedicated: Infra, tmp_path: Path, size: int, prefix: str
) -> None:
    codes: list[int] = []

    async def disrupt(s: Scenario, wave: int) -> None:
        if wave < len(SERVICES):
            await asyncio.sleep(s.rng.uniform(0.0, 0.5))
            name = SERVICES[wave]
            codes.append(await asyncio.to_thread(s.cluster.terminate, name))
            s.cluster.start(name)

    scenario, _ = await run(dedicated, tmp_path, size, prefix, disrupt)
    assert codes == [0, 0, 0]
    assert len(scenario.receiver.received) == size  # a graceful stop leaves nothing to send twice


@pytest.fixture
def proxied_kafka() -> Iterator[tuple[str, int]]:
    """A second broker whose advertised listener is a port the test's proxy will own."""
    port, advertised = 29292, 29294
    run_dir = str(ROOT / ".run" / "kafka-faults-proxy")
    subprocess.run(
        ["deploy/kafka/kafka.sh", "start", "--port", str(port), "--dir", run_dir, "--advertise-port", str(advertised)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    yield f"127.0.0.1:{advertised}", port
    subprocess.run(["deploy/kafka/kafka.sh", "stop", "--port", str(port), "--dir", run_dir], cwd=ROOT, check=False)


async def test_network_stall_between_services_and_broker_then_healed(
    dedicated: Infra, tmp_path: Path, size: int, prefix: str, proxied_kafka: tuple[str, int]
) -> None:
    bootstrap, broker_port = proxied_kafka
    proxy = StallingProxy(listen=int(bootstrap.rsplit(":", 1)[1]), upstream=broker_port)
    await proxy.start()

    async def disrupt(s: Scenario, wave: int) -> None:
        if wave == 2:
            proxy.stall()
            s.notes.append(f"stalled at {await progress(s.uow, s.receiver)}")
            await asyncio.sleep(6)
            proxy.heal()

    try:
        scenario, codes = await run(dedicated, tmp_path, size, prefix, disrupt, bootstrap=bootstrap)
    finally:
        await proxy.close()
    assert scenario.notes
    assert set(codes.values()) == {0}
