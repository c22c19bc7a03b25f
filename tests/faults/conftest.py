"""Dedicated Postgres and Kafka for the fault scenarios, so killing them cannot disturb other tests.

Size: `SMITS_FAULTS_SIZE` valid triggers per scenario (default 300, as in `make test`; `make test-faults`
runs larger)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import infra

ROOT = Path(__file__).resolve().parents[2]
# Per checkout, so that suites of several checkouts on one machine do not share (and kill) each other's: ports
# from a block of 8 chosen by the checkout's path (26000-28999, below the ephemeral range and clear of the fixed
# ports of make test, make bench and make run) and a Postgres directory of its own.
_BLOCK = 26000 + 8 * (int(hashlib.sha256(str(ROOT).encode()).hexdigest(), 16) % 375)
PG_PORT, KAFKA_PORT = str(_BLOCK), str(_BLOCK + 2)  # the broker's controller takes KAFKA_PORT + 1
PROXIED_KAFKA_PORT, PROXY_PORT = _BLOCK + 4, _BLOCK + 6  # test_faults' second broker (+ controller) and its proxy
PG_DIR = f"/var/tmp/smits-pg-faults-{_BLOCK}"
KAFKA_DIR = str(ROOT / ".run" / "kafka-faults")


def _script(*args: str) -> str:
    return infra.script_output(*args, timeout=300)


@dataclass
class Infra:
    pg_url: str
    kafka: str

    def kill_kafka(self) -> None:
        pid = Path(KAFKA_DIR, "kafka.pid").read_text().strip()
        subprocess.run(["kill", "-9", pid], check=True)
        subprocess.run(["sh", "-c", f"while kill -0 {pid} 2>/dev/null; do sleep 0.1; done"], check=True, timeout=30)

    def start_kafka(self) -> None:
        _script("deploy/kafka/kafka.sh", "start", "--port", KAFKA_PORT, "--dir", KAFKA_DIR)

    def crash_restart_postgres(self) -> None:
        _script("deploy/postgres/pg.sh", "crash-restart", "--port", PG_PORT, "--dir", PG_DIR)

    async def new_database(self) -> str:
        return await infra.create_database(self.pg_url)


@pytest.fixture(scope="module")
def dedicated() -> Iterator[Infra]:
    pg_url = _script("deploy/postgres/pg.sh", "start", "--port", PG_PORT, "--dir", PG_DIR).splitlines()[-1]
    asyncio.run(infra.sweep(pg_url, older_than_s=0))  # what earlier runs left: this cluster is the scenarios' alone
    status = subprocess.run(
        ["deploy/kafka/kafka.sh", "status", "--port", KAFKA_PORT, "--dir", KAFKA_DIR], cwd=ROOT, capture_output=True
    )
    if status.returncode != 0:
        # A throwaway broker: earlier runs' topics would only lengthen every restart's log recovery.
        shutil.rmtree(Path(KAFKA_DIR, "data"), ignore_errors=True)
    kafka = _script("deploy/kafka/kafka.sh", "start", "--port", KAFKA_PORT, "--dir", KAFKA_DIR).splitlines()[-1]
    yield Infra(pg_url=pg_url, kafka=kafka)
    subprocess.run(["deploy/kafka/kafka.sh", "stop", "--port", KAFKA_PORT, "--dir", KAFKA_DIR], cwd=ROOT, check=False)
    subprocess.run(["deploy/postgres/pg.sh", "stop", "--port", PG_PORT, "--dir", PG_DIR], cwd=ROOT, check=False)


@pytest.fixture
def size() -> int:
    return int(os.environ.get("SMITS_FAULTS_SIZE", "300"))


@pytest.fixture
def prefix() -> str:
    return f"f{uuid.uuid4().hex[:8]}."
