"""Real Postgres, Kafka and an OpenID Connect provider for tests: started by `make test` (env vars) or on demand
by the scripts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parents[2]
# One template per test process, so runs from several checkouts can share one server.
TEMPLATE_DB = f"smits_template_{int(time.time())}_{os.getpid()}"


def script_output(*args: str, timeout: float = 600) -> str:
    """Run one of deploy/'s scripts; its output. A failure carries what the script said (a broker that did not
    start in time, a port in use) as a note, which CalledProcessError alone would not show."""
    result = subprocess.run(args, cwd=ROOT, check=False, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        error = subprocess.CalledProcessError(result.returncode, args, result.stdout, result.stderr)
        error.add_note("\n".join((result.stderr or result.stdout).strip().splitlines()[-20:]))
        raise error
    return result.stdout.strip()


def _script(*args: str) -> str:
    return script_output(*args).splitlines()[-1]


def postgres_url() -> str:
    """SQLAlchemy URL of the server's `postgres` database."""
    url = os.environ.get("SMITS_TEST_PG_URL")
    return url or _script("deploy/postgres/pg.sh", "start")


def kafka_bootstrap() -> str:
    bootstrap = os.environ.get("SMITS_TEST_KAFKA")
    if bootstrap:
        return bootstrap
    return _script("deploy/kafka/kafka.sh", "start", "--port", "29092", "--dir", str(ROOT / ".run/kafka-test"))


def oidc_issuer() -> str:
    """The test provider's issuer URL (deploy/oidc): `SMITS_TEST_OIDC`, else started on demand like Kafka.
    If it cannot start, the OIDC tests fail on CI (`CI=true`) and are skipped, loudly, elsewhere."""
    issuer = os.environ.get("SMITS_TEST_OIDC")
    if issuer:
        return issuer
    try:
        return _script("deploy/oidc/oidc.sh", "start", "--port", "28080", "--dir", str(ROOT / ".run/oidc-test"))
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        output = getattr(exc, "stderr", None) or str(exc)
        reason = f"SMITS_TEST_OIDC is unset and deploy/oidc/oidc.sh could not start the provider: {output.strip()}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(f"!!! OIDC TESTS NOT RUN: {reason}")


def _dsn(url: str, database: str) -> str:
    base = url.replace("postgresql+asyncpg://", "postgresql://", 1).rsplit("/", 1)[0]
    return f"{base}/{database}"


def with_database(url: str, database: str) -> str:
    return url.rsplit("/", 1)[0] + f"/{database}"


async def create_database(server_url: str, *, template: str | None = None) -> str:
    """Create a uniquely named database (optionally from a template) and return its SQLAlchemy URL."""
    name = f"smits_t_{int(time.time())}_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(_dsn(server_url, "postgres"))
    try:
        suffix = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{suffix}')
    finally:
        await conn.close()
    return with_database(server_url, name)


async def drop_database(url: str) -> None:
    """Drop a test's database (sessions still open on it are ended), so a kept cluster does not grow run after run."""
    server, name = url.rsplit("/", 1)
    conn = await asyncpg.connect(_dsn(server + "/postgres", "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _created(name: str) -> float:
    """When a test database was created, from its name; 0 for names from before names carried it."""
    parts = name.split("_")
    return float(parts[2]) if len(parts) == 4 and parts[2].isdigit() else 0.0


async def sweep(server_url: str, *, older_than_s: float = 6 * 3600) -> int:
    """Drop the test databases an interrupted run left behind (its teardowns never ran), so a kept cluster does not
    grow run after run. Names carry their creation time; a younger one may belong to a run going on elsewhere."""
    conn = await asyncpg.connect(_dsn(server_url, "postgres"))
    try:
        rows = await conn.fetch("SELECT datname FROM pg_database WHERE datname ~ '^smits_(t|template)_'")
        cutoff = time.time() - older_than_s
        names = [row["datname"] for row in rows if _created(row["datname"]) < cutoff]
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
    return len(names)


async def delete_topics(bootstrap: str, prefix: str) -> None:
    """Delete a test's topics (those named with its own prefix), so a kept broker does not collect thousands of
    partitions that it then loads one by one at its next start."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="smits-tests")
    await admin.start()
    try:
        mine = [name for name in await admin.list_topics() if name.startswith(prefix)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


async def recreate_template(server_url: str) -> None:
    conn = await asyncpg.connect(_dsn(server_url, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    finally:
        await conn.close()


if __name__ == "__main__":  # deploy/test-suite.sh: python -m tests.support.infra sweep URL
    import sys

    if sys.argv[1:2] != ["sweep"] or len(sys.argv) != 3:
        raise SystemExit("usage: python -m tests.support.infra sweep POSTGRES_URL")
    print(f"dropped {asyncio.run(sweep(sys.argv[2]))} databases left by earlier test runs", file=sys.stderr)
