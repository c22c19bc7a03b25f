"""Schemathesis against the OpenAPI of a real `smits serve all` on Postgres: no 5xx, responses match."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.support import infra
from tests.support.processes import SMITS, free_port, wait_ready


@pytest.fixture(scope="module")
def served(pg_server: str, pg_template: str, kafka: str) -> Iterator[tuple[str, str]]:
    """(base URL, admin key) of `smits serve all` on its own database and topics."""
    database = asyncio.run(infra.create_database(pg_server, template=pg_template))
    env = {
        **os.environ,
        "SMITS_DATABASE_URL": database,
        "SMITS_KAFKA_BOOTSTRAP": kafka,
        "SMITS_TOPIC_PREFIX": f"fz{uuid.uuid4().hex[:8]}.",
        "SMITS_LOG_LEVEL": "warning",
    }
    subprocess.run([SMITS, "topics", "create"], env=env, check=True, capture_output=True, timeout=60)
    key = subprocess.run(
        [SMITS, "keys", "create", "--name", "fuzz", "--scope", "admin"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    port = free_port()
    process = subprocess.Popen([SMITS, "serve", "all", "--port", str(port)], env=env, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        yield base, key
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        crashes = [line for line in stderr.decode().splitlines() if "unhandled error" in line]
        assert not crashes, crashes[:3]


def test_no_server_errors_and_responses_match_the_schema(served: tuple[str, str]) -> None:
    """Every operation, 25 generated cases each. (Driven directly: the schemathesis pytest plugin does not
    support this pytest version.)"""
    base, key = served
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"schema: {result.err()}")
            continue
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def exercise(case: Any) -> None:
            case.call_and_validate(
                base_url=base,
                headers={"authorization": f"Bearer {key}"},
                timeout=30,
                checks=[not_a_server_error, response_schema_conformance],
            )

        try:
            exercise()
        except Exception as exc:  # collect every operation's failure, not just the first
            failures.append(f"{operation.label}: {exc}"[:2000])
    assert operations >= 20
    assert not failures, "\n\n".join(failures)
