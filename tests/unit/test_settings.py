"""Settings refuse unsafe or malformed values."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.core.settings import ConfigurationError, Settings, load_settings


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


def _typed(annotation: Any) -> bool:
    """Fields whose every value is checked (numbers, booleans, choices): any text is not automatically valid."""
    text = str(annotation)
    return any(kind in text for kind in ("int", "float", "bool", "Literal", "SecretStr"))


FREE_TEXT_SECRETS = {"oidc_client_secret", "smtp_password"}
"""Secrets any text is a valid value of (the provider or the mail server chose it), unlike the database URL."""


@pytest.mark.parametrize(
    "name",
    [
        name
        for name, field in Settings.model_fields.items()
        if _typed(field.annotation) and name not in FREE_TEXT_SECRETS
    ],
)
def test_any_malformed_variable_is_a_configuration_error_naming_it(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(f"SMITS_{name.upper()}", "not-a-valid-value")
    with pytest.raises(ConfigurationError, match=f"SMITS_{name.upper()}") as refused:
        load_settings()
    assert "not-a-valid-value" not in str(refused.value)  # the value is never repeated: it may be a secret


@pytest.mark.parametrize("value", ["inf", "nan", "1e300", "-1"])
def test_durations_are_finite_and_bounded(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SMITS_WEBHOOK_SECRET_GRACE_S", value)
    with pytest.raises(ConfigurationError, match="SMITS_WEBHOOK_SECRET_GRACE_S"):
        load_settings()
