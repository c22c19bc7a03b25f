"""core_consumer_positions: Kafka positions stored with each batch's effects, and parked partitions

Revision ID: 0003_consumer_positions
Revises: 0002_outbox_parked
Create Date: 2026-11-23 20:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.core.db

revision: str = "0003_consumer_positions"
down_revision: str | None = "0002_outbox_parked"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "core_consumer_positions",
        sa.Column("consumer_group", sa.String(length=300), nullable=False),
        sa.Column("topic", sa.String(length=300), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.Column("parked_at", services.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.String(length=2000), nullable=True),
        sa.Column("skip_offset", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer_group", "topic", "partition", name=op.f("pk_core_consumer_positions")),
    )


def downgrade() -> None:
    op.drop_table("core_consumer_positions")
