"""A webhook subscription written straight to the notifier's table (for tests whose notifier has no API key)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from services.core.db import UnitOfWork
from services.notifier.persistence import SubscriptionRow
from services.notifier.signing import generate_secret


async def subscribe_directly(
    uow: UnitOfWork, url: str, *, description: str = "tests", rate_limit_per_s: float | None = None
) -> str:
    """Subscribe `url` to `review.*`; returns the signing secret. Any rate is stored as given (unchecked)."""
    secret = generate_secret()
    async with uow.begin() as session:
        session.add(
            SubscriptionRow(
                id=uuid.uuid4(),
                url=url,
                secret=secret,
                event_types=["review.*"],
                categories=[],
                severities=[],
                scopes=[],
                description=description,
                enabled=True,
                rate_limit_per_s=rate_limit_per_s,
                created_at=datetime.now(UTC),
            )
        )
    return secret
