"""core_outbox_parked: outbox records Kafka refused for good, moved aside for an operator

Revision ID: 0002_outbox_parked
Revises: 0001
Create Date: 2026-11-23 20:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.core.db

revision: str = "0002_outbox_parked"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "core_outbox_parked",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("outbox", sa.String(length=100), nullable=False),
        sa.Column("outbox_id", sa.BigInteger(), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("created_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("error", sa.String(length=2000), nullable=False),
        sa.Column("parked_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_core_outbox_parked")),
    )
    with op.batch_alter_table("core_outbox_parked", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_core_outbox_parked_parked_at"), ["parked_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("core_outbox_parked", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_core_outbox_parked_parked_at"))
    op.drop_table("core_outbox_parked")
