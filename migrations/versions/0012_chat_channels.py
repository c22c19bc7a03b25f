"""chat channels: a subscription's channel (webhook, slack, teams)

Revision ID: 0012_chat_channels
Revises: 0011_reminders
Create Date: 2026-11-24 04:26:00.195537
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from services.core.db import UTCDateTime

revision: str = "0012_chat_channels"
down_revision: str | None = "0011_reminders"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notifier_subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("channel", sa.String(length=20), server_default="webhook", nullable=False))


def downgrade() -> None:
    # Without the column a Slack or Teams subscription would read as a webhook and be sent signed webhooks with an
    # empty secret: it is deleted (disabled, kept with its delivery log) first.
    subscriptions = sa.table(
        "notifier_subscriptions",
        sa.column("channel", sa.String()),
        sa.column("enabled", sa.Boolean()),
        sa.column("deleted_at", UTCDateTime()),
    )
    op.execute(
        subscriptions.update()
        .where(subscriptions.c.channel != "webhook")
        .values(enabled=False, deleted_at=datetime.now(UTC))
    )
    with op.batch_alter_table("notifier_subscriptions", schema=None) as batch_op:
        batch_op.drop_column("channel")
