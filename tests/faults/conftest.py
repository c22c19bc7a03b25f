"""Dedicated Postgres and Kafka for the fault scenarios, so killing them cannot disturb other tests.

Size: `SMITS_FAULTS_SIZE` valid triggers per scenario (default 300, as in `make test`; `make test-faults`
runs larger)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import infra

ROOT = Path(__file__).resolve().parents[2]
PG_PORT, KAFKA_PORT = "25433", "29192"
PG_DIR = "/var/tmp/smits-pg-faults"
KAFKA_DIR = str(ROOT / ".run" / "kafka-faults")


def _script(*args: str) -> str:
    return subprocess.run(args, cwd=ROOT, check=True, capture_output=True, text=True, timeout=300).stdout.strip()


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
