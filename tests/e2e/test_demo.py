"""`make run`'s demo (examples/people.sh and examples/demo.py, as deploy/run-local.sh runs them) against `smits serve
all`: the example triggers open their reviews and the demo people walk the DORA review through its cycle, so the
console a newcomer opens has something on every page. A demo that silently skipped its walk once went unnoticed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from services.core.settings import Settings
from tests.support.processes import SMITS, free_port, service_env, wait_ready

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_walks_the_dora_review_to_a_published_plan_that_pat_acknowledged(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    env = service_env(
        settings,
        SMITS_AUTH_DISABLED="false",
        SMITS_WEBHOOK_ALLOW_CIDRS="127.0.0.0/8",
        SMITS_LOG_LEVEL="warning",
        SMITS=SMITS,
        SMITS_DEMO_API=api,
        SMITS_DEMO_RECEIVER_PORT=str(free_port()),
        SMITS_DEMO_EXIT="1",
    )
    people = subprocess.run(["examples/people.sh"], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert people.returncode == 0, people.stderr
    scopes = [arg for scope in ("triggers:write", "subscriptions:admin", "reviews:read") for arg in ("--scope", scope)]
    key = subprocess.run(
        [SMITS, "keys", "create", "--name", "demo", *scopes],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    env["SMITS_DEMO_KEY"] = key
    log = tmp_path / "smits.log"
    with log.open("wb") as out:
        server = subprocess.Popen([SMITS, "serve", "all", "--port", str(port)], env=env, stdout=out, stderr=out)
        try:
            wait_ready(api, server)
            demo = subprocess.run(
                [sys.executable, "examples/demo.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
            )
            with httpx.Client(base_url=api, headers={"authorization": f"Bearer {key}"}) as client:
                reviews = client.get("/v1/reviews", params={"limit": 50}).json()["items"]
        finally:
            server.terminate()
            server.wait(30)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "Pat acknowledged." in demo.stdout, demo.stdout[-3000:]
    assert f"console: {api}/" in demo.stdout
    dora = next(review for review in reviews if review["correlation_key"] == "regulation:DORA")
    assert (dora["state"], dora["owner"]) == ("publish", "sam@smits.example")
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
