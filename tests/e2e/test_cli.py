"""The `smits` command line as an operator runs it: separate OS processes on real Postgres and Kafka."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx

from services.core.settings import Settings
from tests.support.processes import SMITS, free_port, service_env, wait_ready


def _env(settings: Settings) -> dict[str, str]:
    return service_env(settings, SMITS_TOPIC_PREFIX=settings.topic_prefix + "cli.", SMITS_SHUTDOWN_GRACE_S="10")


def _run(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([SMITS, *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_migrate_topics_keys_and_serve_all_then_sigterm_exits_cleanly(settings: Settings) -> None:
    env = _env(settings)
    _run(env, "migrate")
    assert "4 created" in _run(env, "topics", "create")
    assert "0 created" in _run(env, "topics", "create")  # idempotent
    reader = _run(env, "keys", "create", "--name", "dashboard", "--scope", "reviews:read").strip()
    writer = _run(env, "keys", "create", "--name", "feeder", "--scope", "triggers:write").strip()
    assert reader.startswith("smits_")
    assert reader != writer

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([SMITS, "serve", "all", "--port", str(port)], env=env, stderr=subprocess.PIPE)
    try:
        ready = wait_ready(base, process)
        assert ready.json()["checks"] == {
            "draining": True,
            "database": True,
            "outbox_parked": True,
            "kafka_assignment": True,
            "consumer_parked": True,
        }
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        assert "smits_http_requests_total" in httpx.get(f"{base}/metrics").text

        anonymous = httpx.get(f"{base}/v1/reviews")
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"] == "application/problem+json"
        wrong_scope = httpx.get(f"{base}/v1/reviews", headers={"authorization": f"Bearer {writer}"})
        assert wrong_scope.status_code == 403
        assert wrong_scope.json()["required_scope"] == "reviews:read"
        allowed = httpx.get(f"{base}/v1/reviews", headers={"authorization": f"Bearer {reader}"})
        assert allowed.status_code == 200
        assert allowed.json() == {"items": [], "next_cursor": None}
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr.decode()[-3000:]
    logs = stderr.decode()
    assert reader not in logs
    assert writer not in logs
    assert '"event": "services stopped"' in logs
    verified = _run(env, "audit", "verify")  # the keys created above are audited as cli:<user>
    assert "audit log intact: 2 records" in verified


def test_an_invalid_policy_file_stops_serve_with_a_clear_message(settings: Settings, tmp_path: Path) -> None:
    policies = tmp_path / "policies.yaml"
    policies.write_text("policies:\n  - {id: broken, action: explode}\n")
    env = {**_env(settings), "SMITS_POLICIES": str(policies)}
    result = subprocess.run(
        [SMITS, "serve", "engine", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "configuration error" in result.stderr
    assert str(policies) in result.stderr
    assert "[0] (broken).action" in result.stderr
    assert "Traceback" not in result.stderr


def test_api_keys_and_webhook_secrets_never_reach_a_log_line(settings: Settings) -> None:
    env = {**_env(settings), "SMITS_LOG_LEVEL": "debug", "SMITS_WEBHOOK_ALLOW_CIDRS": "127.0.0.0/8"}
    _run(env, "migrate")
    _run(env, "topics", "create")
    key_result = subprocess.run(
        [SMITS, "keys", "create", "--name", "ops", "--scope", "admin"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key = key_result.stdout.strip()
    assert key not in key_result.stderr
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([SMITS, "serve", "all", "--port", str(port)], env=env, stderr=subprocess.PIPE)
    secrets: list[str] = []
    try:
        wait_ready(base, process)
        auth = {"authorization": f"Bearer {key}"}
        created = httpx.post(f"{base}/v1/subscriptions", json={"url": "http://127.0.0.1:9/hook"}, headers=auth)
        assert created.status_code == 201, created.text
        secrets.append(created.json()["secret"])
        rotated = httpx.post(f"{base}/v1/subscriptions/{created.json()['id']}/secret/rotate", headers=auth)
        secrets.append(rotated.json()["secret"])
        listed = httpx.get(f"{base}/v1/subscriptions", headers=auth)
        assert all(secret not in listed.text for secret in secrets)  # shown once, never again
        bogus = httpx.get(f"{base}/v1/reviews", headers={"authorization": "Bearer smits_guessed-key-value"})
        assert "smits_guessed-key-value" not in bogus.text
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    logs = stderr.decode()
    assert process.returncode == 0
    assert '"level": "debug"' in logs or '"level": "info"' in logs  # the logs were really captured
    for secret in [
        key,
        key.removeprefix("smits_"),
        *secrets,
        *(s.removeprefix("whsec_") for s in secrets),
        "smits_guessed-key-value",
    ]:
        assert secret not in logs


def test_opentelemetry_spans_when_switched_on_by_otel_variables(settings: Settings, tmp_path: Path) -> None:
    trace = "0af7651916cd43dd8448eb211c80319c"
    env = {
        **_env(settings),
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_SERVICE_NAME": "smits-test",
        "SMITS_AUTH_DISABLED": "true",
    }
    _run(env, "migrate")
    _run(env, "topics", "create")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # Files, not pipes: the console exporter writes every span to stdout, and a pipe nobody reads until the end
    # fills up (64 KiB) and blocks the process before it is ready when start-up is slow.
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout_file, err.open("wb") as stderr_file:
        process = subprocess.Popen(
            [SMITS, "serve", "all", "--port", str(port)], env=env, stdout=stdout_file, stderr=stderr_file
        )
    try:
        wait_ready(base)
        event = (Path(__file__).resolve().parents[2] / "examples/triggers/goal_change.json").read_bytes()
        posted = httpx.post(
            f"{base}/v1/triggers",
            content=event,
            headers={"content-type": "application/cloudevents+json", "traceparent": f"00-{trace}-00f067aa0ba902b7-01"},
        )
        assert posted.status_code == 202
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and httpx.get(f"{base}/v1/reviews").json()["items"] == []:
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    spans, logged = out.read_text(), err.read_text()
    assert process.returncode == 0, logged[-2000:]
    assert "OpenTelemetry tracing on" in logged
    assert f'"trace_id": "0x{trace}"' in spans  # the HTTP span joined the caller's trace
    assert '"name": "engine.decide"' in spans
    assert '"service.name": "smits-test"' in spans
