"""Running `smits` as an operator would: its path, its environment, a free port, readiness."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from services.core.settings import Settings

SMITS = str(Path(sys.executable).with_name("smits"))


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a `smits` process on the test's database, broker and topic prefix."""
    return {
        **os.environ,
        "SMITS_DATABASE_URL": settings.database_url.get_secret_value(),
        "SMITS_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "SMITS_TOPIC_PREFIX": settings.topic_prefix,
        **extra,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(base: str, process: subprocess.Popen[bytes] | None = None, *, within: float = 60) -> httpx.Response:
    """Poll `/readyz` until 200; fails if the process exits first or time runs out."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert process is None or process.poll() is None, "smits serve exited early"
        try:
            response = httpx.get(f"{base}/readyz", timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"smits at {base} never became ready")
