"""Configuration errors, in every command, exit 2 naming the variable and its problem: no traceback and never
the value (issue 12, class 8). Through the real `smits` process; nothing here needs Postgres or Kafka."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support.processes import SMITS

COMMANDS = [
    ["serve", "all"],
    ["serve", "ingest", "--host", "127.0.0.1"],
    ["migrate"],
    ["topics", "create"],
    ["keys", "create", "--name", "n", "--scope", "admin"],
    ["dlq", "replay"],
]
INVALID = [
    ({"SMITS_PORT": "eighty"}, "SMITS_PORT"),
    ({"SMITS_DATABASE_URL": "mysql://root:hunter2@db/smits"}, "SMITS_DATABASE_URL"),
    ({"SMITS_DELIVERY_RETRY_SCHEDULE": "0,soon"}, "SMITS_DELIVERY_RETRY_SCHEDULE"),
    ({"SMITS_WEBHOOK_SECRET_GRACE_S": "inf"}, "SMITS_WEBHOOK_SECRET_GRACE_S"),
    ({"SMITS_KAFKA_BOOTSTRAP": "no port here"}, "SMITS_KAFKA_BOOTSTRAP"),
]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("SMITS_")}
    return subprocess.run([SMITS, *args], env={**clean, **env}, capture_output=True, text=True, timeout=60, check=False)


def _refused(result: subprocess.CompletedProcess[str], variable: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "configuration error" in result.stderr
    assert variable in result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_auth_disabled_off_loopback_exits_2_as_the_readme_says() -> None:
    _refused(_run(["serve", "all"], {"SMITS_AUTH_DISABLED": "true", "SMITS_HOST": "0.0.0.0"}), "SMITS_AUTH_DISABLED")


@pytest.mark.parametrize(("env", "variable"), INVALID, ids=[variable for _, variable in INVALID])
def test_an_invalid_setting_stops_serve_with_exit_2(env: dict[str, str], variable: str) -> None:
    _refused(_run(["serve", "all"], env), variable)


@pytest.mark.parametrize("args", COMMANDS, ids=lambda args: " ".join(args[:2]))
def test_every_command_refuses_invalid_settings_the_same_way(args: list[str]) -> None:
    _refused(_run(args, {"SMITS_DATABASE_URL": "mysql://root:hunter2@db/smits"}), "SMITS_DATABASE_URL")
