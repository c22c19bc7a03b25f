"""The benchmark's own Kafka broker and PostgreSQL cluster (the deploy scripts the tests use), databases,
smits processes and their memory."""

from __future__ import annotations

import asyncio
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from bench import cpu

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / ".run" / "bench"
SMITS = str(Path(sys.executable).with_name("smits"))
PY_SPY = Path(sys.executable).with_name("py-spy")
profile_dir: Path | None = None
"""Where `--profile` puts a py-spy profile (collapsed stacks) of every smits process, None for no profiling."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _script(*args: str) -> str:
    return subprocess.run(
        [str(ROOT / "deploy" / args[0]), *args[1:]], check=True, capture_output=True, text=True
    ).stdout.strip()


def postgres_dir(port: int) -> Path:
    return Path(f"/var/tmp/smits-pg-bench-{port}")


def kafka_dir(port: int) -> Path:
    return RUN / f"kafka-{port}"


def start_postgres(port: int) -> str:
    return _script("postgres/pg.sh", "start", "--port", str(port), "--dir", str(postgres_dir(port)))


def stop_postgres(port: int) -> None:
    _script("postgres/pg.sh", "stop", "--port", str(port), "--dir", str(postgres_dir(port)))


def start_kafka(port: int) -> str:
    return _script("kafka/kafka.sh", "start", "--port", str(port), "--dir", str(kafka_dir(port)))


def stop_kafka(port: int) -> None:
    _script("kafka/kafka.sh", "stop", "--port", str(port), "--dir", str(kafka_dir(port)))


@dataclass(frozen=True)
class Stack:
    """The bench's broker and cluster: addresses, and where their process ids are (for CPU time)."""

    kafka: str
    pg: str
    kafka_port: int
    pg_port: int

    def kafka_pid(self) -> int | None:
        return cpu.pid_file(kafka_dir(self.kafka_port) / "kafka.pid")

    def postgres_pid(self) -> int | None:
        return cpu.postgres_pid(postgres_dir(self.pg_port))


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def fresh_database(server_url: str, name: str) -> str:
    """Drop and create database `name` on the cluster of `server_url`; returns its SQLAlchemy URL."""
    connection = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


async def drop_database(server_url: str, name: str) -> None:
    """Drop a run's database once its figures are taken (a full run of three leaves gigabytes otherwise)."""
    connection = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def smits_env(database_url: str, kafka: str, prefix: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "SMITS_DATABASE_URL": database_url,
        "SMITS_KAFKA_BOOTSTRAP": kafka,
        "SMITS_TOPIC_PREFIX": prefix,
        "SMITS_LOG_LEVEL": "warning",
        "SMITS_AUTH_DISABLED": "true",
        "SMITS_WEBHOOK_ALLOW_CIDRS": "127.0.0.1/32",
        **extra,
    }


def prepare(env: dict[str, str]) -> None:
    """Schema and topics, as an operator would (`smits migrate`, `smits topics create`)."""
    subprocess.run([SMITS, "migrate"], env=env, check=True, capture_output=True)
    subprocess.run([SMITS, "topics", "create"], env=env, check=True, capture_output=True)


def memory_kib(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of a process in KiB, from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in {"VmRSS", "VmHWM"}:
            values[name] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


@dataclass(kw_only=True)
class Service:
    """`smits serve NAME` as its own OS process, with its log under .run/bench/."""

    name: str
    env: dict[str, str]
    tag: str
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    peak_kib: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)

    def start(self) -> None:
        RUN.mkdir(parents=True, exist_ok=True)
        out = (RUN / f"{self.tag}-{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            [SMITS, "serve", self.name, "--port", str(self.port)], env=self.env, stdout=out, stderr=out
        )
        if profile_dir is not None:  # py-spy stops by itself when the process exits
            profile_dir.mkdir(parents=True, exist_ok=True)
            target = profile_dir / f"{self.tag}-{self.name}.txt"
            command = [str(PY_SPY), "record", "-r", "200", "-f", "raw", "-o", str(target), "--pid", str(self.pid)]
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def sample(self) -> int:
        """Current RSS in KiB (also remembered with the time); fails if the service died."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"smits serve {self.name} exited with {self.process.returncode}; see .run/bench/")
        rss, peak = memory_kib(self.pid)
        self.peak_kib = max(self.peak_kib, peak)
        self.samples.append((time.monotonic(), rss))
        return rss

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.sample()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Receiver:
    """The bench receiver (`bench/receiver.py`) as its own process."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([sys.executable, "-m", "bench.receiver", str(port)], cwd=ROOT)
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{self.url}/stats", timeout=1)
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    async def reset(self, *, record: bool = False) -> None:
        async with httpx.AsyncClient() as client:
            await client.post(f"{self.url}/reset{'?record=1' if record else ''}")

    async def stats(self) -> dict[str, float]:
        async with httpx.AsyncClient() as client:
            stats: dict[str, float] = (await client.get(f"{self.url}/stats")).json()
            return stats

    async def dump(self) -> list[dict[str, object]]:
        async with httpx.AsyncClient(timeout=120) as client:
            records: list[dict[str, object]] = (await client.get(f"{self.url}/dump")).json()
            return records

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


async def wait_for(check: object, *, what: str, timeout_s: float, every_s: float = 0.25) -> float:
    """Await `check()` (an async callable returning bool) until true; returns the time.time() it became so."""
    deadline = time.monotonic() + timeout_s
    while True:
        if await check():  # type: ignore[operator]
            return time.time()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s:.0f} s")
        await asyncio.sleep(every_s)


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory_gib = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory_gib:.0f} GiB RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; Kafka 3.9.2 (KRaft, 1 node) and PostgreSQL "
        f"(fsync off) on the same machine"
    )
