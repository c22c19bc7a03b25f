"""Signature checks with the two reference libraries, never with our own signing code."""

from __future__ import annotations

from typing import Any

import standardwebhooks
import svix.webhooks

from tests.support.receiver import Received


def verify_both(secret: str, message: Received) -> dict[str, Any]:
    """Raises unless both `standardwebhooks` and `svix` accept the message under `secret`."""
    svix.webhooks.Webhook(secret).verify(message.body, dict(message.headers))
    payload: dict[str, Any] = standardwebhooks.Webhook(secret).verify(message.body, dict(message.headers))
    return payload
