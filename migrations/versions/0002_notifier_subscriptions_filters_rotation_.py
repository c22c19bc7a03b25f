"""notifier subscriptions: filters, rotation, disablement, notices; review scope

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 14:49:38.469523
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.core.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notifier_notices",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.String(length=1000), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["notifier_subscriptions.id"],
            name=op.f("fk_notifier_notices_subscription_id_notifier_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifier_notices")),
    )
    with op.batch_alter_table("notifier_notices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notifier_notices_subscription_id"), ["subscription_id"], unique=False)

    with op.batch_alter_table("engine_reviews", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scope", sa.String(length=500), nullable=True))

    with op.batch_alter_table("notifier_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notifier_deliveries_order", ["subscription_id", "review_id", "sequence"], unique=False
        )

    with op.batch_alter_table("notifier_subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("categories", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        batch_op.add_column(sa.Column("severities", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        batch_op.add_column(sa.Column("scopes", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        batch_op.add_column(sa.Column("previous_secret", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column("previous_secret_expires_at", services.core.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("rate_limit_per_s", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("failing_since", services.core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("disabled_reason", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("deleted_at", services.core.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notifier_subscriptions", schema=None) as batch_op:
        batch_op.drop_column("deleted_at")
        batch_op.drop_column("disabled_reason")
        batch_op.drop_column("failing_since")
        batch_op.drop_column("rate_limit_per_s")
        batch_op.drop_column("previous_secret_expires_at")
        batch_op.drop_column("previous_secret")
        batch_op.drop_column("scopes")
        batch_op.drop_column("severities")
        batch_op.drop_column("categories")

    with op.batch_alter_table("notifier_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_notifier_deliveries_order")

    with op.batch_alter_table("engine_reviews", schema=None) as batch_op:
        batch_op.drop_column("scope")

    with op.batch_alter_table("notifier_notices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifier_notices_subscription_id"))

    op.drop_table("notifier_notices")
