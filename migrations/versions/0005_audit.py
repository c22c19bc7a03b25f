"""audit: the hash-chained audit log, its head and checkpoints

Revision ID: 0005_audit
Revises: 0004_identity
Create Date: 2026-11-23 22:33:19.638400
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.core.db

revision: str = "0005_audit"
down_revision: str | None = "0004_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "core_audit_checkpoints",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_core_audit_checkpoints")),
    )
    op.create_table(
        "core_audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_core_audit_head")),
    )
    op.create_table(
        "core_audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("principal", sa.String(length=400), nullable=False),
        sa.Column("method", sa.String(length=20), nullable=False),
        sa.Column("key_id", sa.String(length=36), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=400), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("before_digest", sa.String(length=64), nullable=True),
        sa.Column("after_digest", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_core_audit_log")),
    )
    with op.batch_alter_table("core_audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_core_audit_log_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_core_audit_log_principal"), ["principal"], unique=False)
        batch_op.create_index(batch_op.f("ix_core_audit_log_target"), ["target"], unique=False)
    # The chain's head exists from the start, so concurrent first appends lock it rather than race to create it.
    op.execute("INSERT INTO core_audit_head (id, seq, hash) VALUES (1, 0, '" + "0" * 64 + "')")


def downgrade() -> None:
    with op.batch_alter_table("core_audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_core_audit_log_target"))
        batch_op.drop_index(batch_op.f("ix_core_audit_log_principal"))
        batch_op.drop_index(batch_op.f("ix_core_audit_log_at"))

    op.drop_table("core_audit_log")
    op.drop_table("core_audit_head")
    op.drop_table("core_audit_checkpoints")
