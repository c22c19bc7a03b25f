"""need-to-know: restricted reviews and their clearances, subscriptions cleared for restricted data

Revision ID: 0007_need_to_know
Revises: 0006_actors
Create Date: 2026-11-23 22:40:09.360688

Added columns default to false: existing reviews are not restricted, existing subscriptions not cleared.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_need_to_know"
down_revision: str | None = "0006_actors"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "engine_review_clearances",
        sa.Column("review_id", sa.Uuid(), nullable=False),
        sa.Column("grant", sa.String(length=400), nullable=False),
        sa.ForeignKeyConstraint(
            ["review_id"], ["engine_reviews.id"], name=op.f("fk_engine_review_clearances_review_id_engine_reviews")
        ),
        sa.PrimaryKeyConstraint("review_id", "grant", name=op.f("pk_engine_review_clearances")),
    )
    with op.batch_alter_table("engine_reviews", schema=None) as batch_op:
        batch_op.add_column(sa.Column("restricted", sa.Boolean(), server_default=sa.false(), nullable=False))

    with op.batch_alter_table("notifier_subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("restricted_data", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("notifier_subscriptions", schema=None) as batch_op:
        batch_op.drop_column("restricted_data")

    with op.batch_alter_table("engine_reviews", schema=None) as batch_op:
        batch_op.drop_column("restricted")

    op.drop_table("engine_review_clearances")
