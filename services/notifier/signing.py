"""Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` with a `whsec_` key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime

SECRET_PREFIX = "whsec_"  # noqa: S105 (a format prefix, not a secret)
SECRET_BYTES = 32


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def sign(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets_: list[str], *, msg_id: str, timestamp: int, body: bytes) -> str:
    """Space-separated signatures, one per active secret (two during a rotation's grace period)."""
    return " ".join(sign(secret, msg_id=msg_id, timestamp=timestamp, body=body) for secret in secrets_)


def active_secrets(secret: str, previous: str | None, previous_expires_at: datetime | None, now: datetime) -> list[str]:
    """The current secret, plus the previous one while its rotation grace period lasts."""
    if previous and previous_expires_at is not None and previous_expires_at > now:
        return [secret, previous]
    return [secret]
