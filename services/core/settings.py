"""One `Settings` for every service, read from `SMITS_*` environment variables (see CONTRACT.md)."""

from __future__ import annotations

import ipaddress
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from services.contracts.triggers import Category
from services.core.identity.clearance import GRANT_PATTERN, normal_grant
from services.core.identity.model import EMAIL_PATTERN

DEFAULT_RETRY_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
"""Delivery retry delays in seconds, as Svix: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h."""


MAX_SECONDS = 365 * 86_400.0
"""The longest duration any setting takes: past it, date arithmetic could overflow (and it is a typo)."""
Seconds = Annotated[float, Field(gt=0, le=MAX_SECONDS)]
DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
_UNPARSABLE = re.compile(r'error parsing value for field "(\w+)"')
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
SMTP_PORTS = {"none": 25, "starttls": 587, "implicit": 465}
"""The usual port of each `SMITS_SMTP_TLS` mode, used when `SMITS_SMTP_PORT` is unset."""
_OFFSET = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
DEFAULT_REMINDER_OFFSETS = (7 * 86_400.0, 86_400.0)
"""Reminders before a due date: 7 days and 1 day before."""
_BOOTSTRAP = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}(,[A-Za-z0-9.\-\[\]:]+:\d{1,5})*$")


class ConfigurationError(ValueError):
    """Configuration a service cannot start with; the message names the setting or file and the problem."""


def load_settings(**overrides: object) -> Settings:
    """`Settings` from the environment (and `overrides`); any invalid value is a `ConfigurationError`
    naming each variable and its problem, never the value (it may be a secret)."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigurationError("; ".join(_problem(error["loc"], error["msg"]) for error in exc.errors())) from None
    except SettingsError as exc:
        field = _UNPARSABLE.search(str(exc))  # pydantic-settings names the field, not the variable
        message = f"SMITS_{field[1].upper()}: is not valid JSON" if field else str(exc)
        raise ConfigurationError(message) from None


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    message = message.removeprefix("Value error, ")
    return f"SMITS_{str(loc[0]).upper()}: {message}" if loc else message  # a cross-field check names its own


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SMITS_", extra="ignore", frozen=True)

    database_url: SecretStr = SecretStr("sqlite+aiosqlite:///./smits.db")
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: Annotated[str, Field(max_length=200, pattern=r"^[A-Za-z0-9._-]*$")] = "smits."
    """Kafka topic names allow letters, digits, `.`, `_` and `-`, up to 249 characters."""
    topic_partitions: int = Field(default=3, ge=1, le=10_000)
    topic_replication: int = Field(default=1, ge=1, le=100)
    policies: Path | None = None
    auth_disabled: bool = False
    webhook_allow_cidrs: Annotated[tuple[str, ...], NoDecode] = ()

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65_535)
    """0: any free port."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"

    http_max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=1024**3)
    ingest_rate_limit_per_s: float = Field(default=1000.0, ge=0.01, le=1e9)
    """Trigger events a second per API key on `POST /v1/triggers` (a batch counts each event)."""
    ingest_rate_burst: float = Field(default=2000.0, ge=1, le=1e9)
    ingest_restricted_categories: Annotated[tuple[str, ...], NoDecode] = ("merger_acquisition",)
    """Need-to-know in ingest's trigger status routes: triggers of these categories are shown only to callers
    holding a grant in `ingest_restricted_to` (or `*`); keep in step with the engine policies' `restricted_to`."""
    ingest_restricted_to: Annotated[tuple[str, ...], NoDecode] = ("role:strategy_manager",)
    consumer_max_records: int = Field(default=500, ge=1, le=10_000)
    consumer_fetch_timeout_ms: int = Field(default=200, ge=1, le=600_000)
    consumer_max_attempts: int = Field(default=5, ge=1, le=100)
    """Failures of a batch (and then of its failing record alone) before its partition is parked; outages
    (database or network unreachable) are retried without counting."""
    consumer_retry_backoff_s: float = Field(default=0.5, gt=0, le=60)
    """First delay between attempts of a failing batch; it doubles up to 5 s."""
    outbox_batch_size: int = Field(default=500, ge=1, le=100_000)
    outbox_poll_interval_s: Seconds = 0.05
    delivery_poll_interval_s: Seconds = 0.1
    delivery_batch_size: int = Field(default=200, ge=1, le=10_000)
    """Webhook deliveries claimed per query; also how many of one subscription may wait claimed beyond its slots
    (while its sends are fast: see `notifier.slots`). A claim round trip refills a fast receiver's queue, so the
    larger the batch, the fewer claims per webhook."""
    delivery_concurrency: int = Field(default=10, ge=1, le=10_000)
    """Webhook POSTs in flight at once per notifier."""
    delivery_subscription_concurrency: int = Field(default=4, ge=1, le=10_000)
    """Of those, at most this many to one subscription, so a slow endpoint cannot take every slot."""
    delivery_timeout_s: float = Field(default=15.0, gt=0, le=300)
    """Total deadline of one webhook POST: connect, send, response headers and the kept part of the body."""
    delivery_lease_s: Seconds = 60.0
    """How long a claimed delivery stays reserved; a crashed notifier's claims are retried after it."""
    delivery_retry_schedule: Annotated[tuple[float, ...], NoDecode] = DEFAULT_RETRY_SCHEDULE
    webhook_secret_grace_s: float = Field(default=86_400.0, ge=0, le=MAX_SECONDS)
    webhook_disable_after_s: Seconds = 5 * 86_400.0
    webhook_retry_after_max_s: float = Field(default=86_400.0, gt=0, le=30 * 86_400.0)
    """The longest `Retry-After` honoured; a longer one (or an HTTP date further away) waits this long."""
    timer_interval_s: Seconds = 5.0
    reminder_offsets: Annotated[tuple[float, ...], NoDecode] = DEFAULT_REMINDER_OFFSETS
    """How long before a phase's or an acknowledgement's due date its reminders go out, in seconds; the variable
    takes a comma-separated list of seconds or durations (`7d,1d`, `36h`, `3600`); empty: no reminders."""
    shutdown_grace_s: Seconds = 20.0

    public_url: Annotated[str, Field(max_length=500, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")] = (
        "http://127.0.0.1:8000"
    )
    """Base URL of smits as people reach it: links in messages, OpenID Connect redirects, cookie security."""
    session_idle_s: Seconds = 8 * 3600.0
    """A browser session ends after this long without a request."""
    session_absolute_s: Seconds = 7 * 86_400.0
    """A browser session ends this long after sign-in, however busy."""
    smtp_host: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.\-:\[\]]+$")] | None = None
    """Mail server of the e-mail channel; None: the channel is off and no e-mail is planned."""
    smtp_port: int | None = Field(default=None, ge=1, le=65_535)
    """None: the usual port of `smtp_tls` (`SMTP_PORTS`)."""
    smtp_tls: Literal["none", "starttls", "implicit"] = "starttls"
    smtp_user: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    smtp_password: SecretStr | None = None
    mail_from: Annotated[str, Field(max_length=320, pattern=EMAIL_PATTERN)] | None = None
    """The sender of smits' e-mail (header `From` and the envelope); required with `smtp_host`."""
    link_signing_key: SecretStr | None = None
    """Key (at least 32 characters) signing the acknowledgement links in campaign e-mails; None: the e-mails carry
    only the link that opens the document after sign-in, and no signed link is accepted."""
    link_grace_s: Seconds = 7 * 86_400.0
    """A signed acknowledgement link expires this long after the acknowledgement's due date."""
    oidc_issuer: Annotated[str, Field(max_length=2000)] | None = None
    """OpenID Connect provider people sign in at (its issuer URL); none: no sign-in."""
    oidc_client_id: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    oidc_client_secret: SecretStr | None = None
    """None: a public client (PKCE only)."""
    oidc_roles_claim: Annotated[str, Field(min_length=1, max_length=200)] = "roles"
    """The claim holding a person's roles (a list or a space-separated string); a dotted name not present as
    such is a path into nested claims (`realm_access.roles`)."""
    oidc_role_map: dict[str, str] = Field(default_factory=dict)
    """Provider role name to smits role (JSON object); unmapped names count only if they are smits roles."""
    oidc_audience: Annotated[str, Field(min_length=1, max_length=500)] | None = None
    """The `aud` bearer tokens must carry; none: the client id."""

    @field_validator("webhook_allow_cidrs", "ingest_restricted_categories", "ingest_restricted_to", mode="before")
    @classmethod
    def _split_cidrs(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("link_signing_key")
    @classmethod
    def _check_link_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    @field_validator("webhook_allow_cidrs")
    @classmethod
    def _check_cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)  # raises ValueError with the bad entry
        return value

    @field_validator("ingest_restricted_categories")
    @classmethod
    def _check_categories(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - {category.value for category in Category})
        if unknown:
            raise ValueError(f"unknown trigger categories: {', '.join(unknown)}")
        return value

    @field_validator("ingest_restricted_to")
    @classmethod
    def _check_grants(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [token for token in value if not re.match(GRANT_PATTERN, token)]
        if bad:
            raise ValueError(f"not grant tokens (principal:<email>, role:<role>, unit:<name>, *): {', '.join(bad)}")
        return tuple(normal_grant(token) for token in value)

    @field_validator("delivery_retry_schedule", mode="before")
    @classmethod
    def _split_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())  # floats: checked after
        return value

    @field_validator("reminder_offsets", mode="before")
    @classmethod
    def _split_offsets(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        offsets = []
        for part in (part.strip().lower() for part in value.split(",")):
            match = _OFFSET.match(part)
            if part and not match:
                raise ValueError("each offset is a number of seconds, or a number with s, m, h, d or w (7d, 36h)")
            if match:
                offsets.append(float(match[1]) * _UNIT_SECONDS[match[2]])
        return tuple(offsets)

    @field_validator("reminder_offsets")
    @classmethod
    def _check_offsets(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < offset <= MAX_SECONDS for offset in value):
            raise ValueError(f"offsets must be more than 0 and at most {MAX_SECONDS:g} seconds")
        return tuple(sorted(set(value), reverse=True))

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr) -> SecretStr:
        try:
            driver = make_url(value.get_secret_value()).drivername
        except ArgumentError:
            raise ValueError("is not a database URL (e.g. postgresql+asyncpg://user@host/db)") from None
        if driver not in DRIVERS:
            raise ValueError(f"driver {driver!r} is not supported; use one of {', '.join(DRIVERS)}")
        return value

    @field_validator("oidc_issuer")
    @classmethod
    def _check_issuer(cls, value: str | None) -> str | None:
        if value is None:
            return None
        url = urlsplit(value)
        if url.scheme not in {"https", "http"} or not url.hostname or url.query or url.fragment:
            raise ValueError("must be the provider's issuer URL (https://host/path, no query or fragment)")
        if url.scheme == "http" and url.hostname not in {"127.0.0.1", "localhost", "::1"}:
            raise ValueError("must use https unless the provider is on loopback")
        return value

    @field_validator("oidc_role_map")
    @classmethod
    def _check_role_map(cls, value: dict[str, str]) -> dict[str, str]:
        from services.core.identity.oidc import SMITS_ROLES

        unknown = sorted({role for role in value.values() if role not in SMITS_ROLES})
        if unknown:
            raise ValueError(f"maps to {', '.join(unknown)}, not smits roles ({', '.join(sorted(SMITS_ROLES))})")
        return value

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        if not _BOOTSTRAP.match(value):
            raise ValueError("must be host:port[,host:port...]")
        return value

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if self.delivery_lease_s <= self.delivery_timeout_s:
            raise ValueError("SMITS_DELIVERY_LEASE_S must exceed SMITS_DELIVERY_TIMEOUT_S")
        if not self.delivery_retry_schedule:
            raise ValueError("SMITS_DELIVERY_RETRY_SCHEDULE needs at least one delay")
        if any(not 0 <= delay <= MAX_SECONDS for delay in self.delivery_retry_schedule):
            raise ValueError(f"SMITS_DELIVERY_RETRY_SCHEDULE delays must be from 0 to {MAX_SECONDS:g} seconds")
        if self.oidc_issuer is not None and self.oidc_client_id is None:
            raise ValueError("SMITS_OIDC_CLIENT_ID is required when SMITS_OIDC_ISSUER is set")
        if self.auth_disabled and self.host not in LOOPBACK:
            raise ValueError("SMITS_AUTH_DISABLED is only allowed when listening on loopback")
        self._check_smtp()
        return self

    def _check_smtp(self) -> None:
        if self.smtp_host is None:
            return
        if self.mail_from is None:
            raise ValueError("SMITS_MAIL_FROM is required when SMITS_SMTP_HOST is set")
        if (self.smtp_user is None) != (self.smtp_password is None):
            raise ValueError("SMITS_SMTP_USER and SMITS_SMTP_PASSWORD are given together or not at all")
        if self.smtp_password is not None and self.smtp_tls == "none" and self.smtp_host not in LOOPBACK:
            raise ValueError("SMITS_SMTP_PASSWORD would cross the network in clear text: set SMITS_SMTP_TLS")

    @property
    def smtp_port_or_default(self) -> int:
        return self.smtp_port or SMTP_PORTS[self.smtp_tls]

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @cached_property
    def allow_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in self.webhook_allow_cidrs)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.get_secret_value().startswith("sqlite")
