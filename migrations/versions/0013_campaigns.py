"""Acknowledgement campaigns: how an acknowledgement was proven (`method`), a recipient's decline or exception
request with its reason, and the version the recipient had acknowledged when this one was published.

Revision ID: 0013_campaigns
Revises: 0012_chat_channels
Create Date: 2026-11-24 04:27:17.564150
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.core.db

revision: str = "0013_campaigns"
down_revision: str | None = "0012_chat_channels"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("engine_acknowledgements", schema=None) as batch_op:
        batch_op.add_column(sa.Column("method", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("decision", sa.String(length=30), nullable=True))
        batch_op.add_column(sa.Column("decided_at", services.core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("decision_reason", sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column("last_acknowledged_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("engine_acknowledgements", schema=None) as batch_op:
        batch_op.drop_column("last_acknowledged_version")
        batch_op.drop_column("decision_reason")
        batch_op.drop_column("decided_at")
        batch_op.drop_column("decision")
        batch_op.drop_column("method")
