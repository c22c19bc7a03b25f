"""actors: acknowledgements recorded on someone's behalf, actor columns sized for e-mail addresses

Revision ID: 0006_actors
Revises: 0005_audit
Create Date: 2026-11-23 22:42:41.660055
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_actors"
down_revision: str | None = "0005_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("engine_acknowledgements", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recorded_by", sa.String(length=320), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.String(length=1000), nullable=True))
        batch_op.alter_column(
            "recipient", existing_type=sa.VARCHAR(length=200), type_=sa.String(length=320), existing_nullable=False
        )

    with op.batch_alter_table("engine_approvals", schema=None) as batch_op:
        batch_op.alter_column(
            "approver", existing_type=sa.VARCHAR(length=200), type_=sa.String(length=320), existing_nullable=False
        )

    with op.batch_alter_table("engine_assessments", schema=None) as batch_op:
        batch_op.alter_column(
            "created_by", existing_type=sa.VARCHAR(length=200), type_=sa.String(length=320), existing_nullable=True
        )

    with op.batch_alter_table("engine_reviews", schema=None) as batch_op:
        batch_op.alter_column(
            "owner", existing_type=sa.VARCHAR(length=200), type_=sa.String(length=320), existing_nullable=True
        )

    with op.batch_alter_table("engine_transitions", schema=None) as batch_op:
        batch_op.alter_column(
            "actor", existing_type=sa.VARCHAR(length=200), type_=sa.String(length=320), existing_nullable=True
        )


def downgrade() -> None:
    with op.batch_alter_table("engine_transitions", schema=None) as batch_op:
        batch_op.alter_column(
            "actor", existing_type=sa.String(length=320), type_=sa.VARCHAR(length=200), existing_nullable=True
        )

    with op.batch_alter_table("engine_reviews", schema=None) as batch_op:
        batch_op.alter_column(
            "owner", existing_type=sa.String(length=320), type_=sa.VARCHAR(length=200), existing_nullable=True
        )

    with op.batch_alter_table("engine_assessments", schema=None) as batch_op:
        batch_op.alter_column(
            "created_by", existing_type=sa.String(length=320), type_=sa.VARCHAR(length=200), existing_nullable=True
        )

    with op.batch_alter_table("engine_approvals", schema=None) as batch_op:
        batch_op.alter_column(
            "approver", existing_type=sa.String(length=320), type_=sa.VARCHAR(length=200), existing_nullable=False
        )

    with op.batch_alter_table("engine_acknowledgements", schema=None) as batch_op:
        batch_op.alter_column(
            "recipient", existing_type=sa.String(length=320), type_=sa.VARCHAR(length=200), existing_nullable=False
        )
        batch_op.drop_column("reason")
        batch_op.drop_column("recorded_by")
