"""Settings refuse unsafe or malformed values."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.core.settings import Settings


def test_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "SMITS_DATABASE_URL",
        "SMITS_KAFKA_BOOTSTRAP",
        "SMITS_TOPIC_PREFIX",
        "SMITS_AUTH_DISABLED",
        "SMITS_WEBHOOK_ALLOW_CIDRS",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.database_url.get_secret_value() == "sqlite+aiosqlite:///./smits.db"
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.topic("triggers") == "smits.triggers"
    assert settings.auth_disabled is False
    assert settings.webhook_allow_cidrs == ()


def test_env_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMITS_WEBHOOK_ALLOW_CIDRS", "127.0.0.0/8, 10.1.0.0/16")
    monkeypatch.setenv("SMITS_DELIVERY_RETRY_SCHEDULE", "0,1.5,30")
    settings = Settings()
    assert settings.webhook_allow_cidrs == ("127.0.0.0/8", "10.1.0.0/16")
    assert settings.delivery_retry_schedule == (0.0, 1.5, 30.0)


@pytest.mark.parametrize(
    "overrides",
    [
        {"webhook_allow_cidrs": ("not-a-cidr",)},
        {"auth_disabled": True, "host": "0.0.0.0"},
        {"delivery_retry_schedule": ()},
        {"delivery_retry_schedule": (-1.0,)},
    ],
)
def test_unsafe_or_malformed_values_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Settings(**overrides)


def test_database_url_is_not_printed() -> None:
    settings = Settings(database_url="postgresql+asyncpg://u:hunter2@db/smits")
    assert "hunter2" not in repr(settings)
