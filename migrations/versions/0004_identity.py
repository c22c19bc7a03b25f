"""identity: principals, org units, memberships, owned and revocable API keys, browser sessions, pending OIDC sign-ins

Revision ID: 0004_identity
Revises: 0003_consumer_positions
Create Date: 2026-11-23 22:30:19.679668
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.core.db

revision: str = "0004_identity"
down_revision: str | None = "0003_consumer_positions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "core_pending_logins",
        sa.Column("state", sa.String(length=100), nullable=False),
        sa.Column("nonce", sa.String(length=100), nullable=False),
        sa.Column("code_verifier", sa.String(length=200), nullable=False),
        sa.Column("redirect_uri", sa.String(length=1000), nullable=False),
        sa.Column("return_to", sa.String(length=1000), nullable=False),
        sa.Column("created_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("state", name=op.f("pk_core_pending_logins")),
    )
    op.create_table(
        "core_principals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("manager_id", sa.Uuid(), nullable=True),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("oidc_issuer", sa.String(length=500), nullable=True),
        sa.Column("oidc_subject", sa.String(length=500), nullable=True),
        sa.Column("cleared_restricted", sa.Boolean(), nullable=False),
        sa.Column("created_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", services.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["manager_id"], ["core_principals.id"], name=op.f("fk_core_principals_manager_id_core_principals")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_core_principals")),
        sa.UniqueConstraint("email", name=op.f("uq_core_principals_email")),
        sa.UniqueConstraint("oidc_issuer", "oidc_subject", name=op.f("uq_core_principals_oidc_issuer_oidc_subject")),
    )
    op.create_table(
        "core_org_units",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("parent_id", sa.Uuid(), nullable=True),
        sa.Column("lead_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["lead_id"], ["core_principals.id"], name=op.f("fk_core_org_units_lead_id_core_principals")
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["core_org_units.id"], name=op.f("fk_core_org_units_parent_id_core_org_units")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_core_org_units")),
        sa.UniqueConstraint("name", name=op.f("uq_core_org_units_name")),
    )
    op.create_table(
        "core_sessions",
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("principal_id", sa.Uuid(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=20), nullable=False),
        sa.Column("created_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["principal_id"], ["core_principals.id"], name=op.f("fk_core_sessions_principal_id_core_principals")
        ),
        sa.PrimaryKeyConstraint("hash", name=op.f("pk_core_sessions")),
    )
    with op.batch_alter_table("core_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_core_sessions_principal_id"), ["principal_id"], unique=False)

    op.create_table(
        "core_memberships",
        sa.Column("principal_id", sa.Uuid(), nullable=False),
        sa.Column("org_unit_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_unit_id"], ["core_org_units.id"], name=op.f("fk_core_memberships_org_unit_id_core_org_units")
        ),
        sa.ForeignKeyConstraint(
            ["principal_id"], ["core_principals.id"], name=op.f("fk_core_memberships_principal_id_core_principals")
        ),
        sa.PrimaryKeyConstraint("principal_id", "org_unit_id", name=op.f("pk_core_memberships")),
    )
    # Existing keys get an id each (then the column becomes NOT NULL); with no owner they stay service accounts.
    with op.batch_alter_table("core_api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("id", sa.Uuid(), nullable=True))
    keys = sa.table("core_api_keys", sa.column("hash", sa.String()), sa.column("id", sa.Uuid()))
    connection = op.get_bind()
    for (key_hash,) in connection.execute(sa.select(keys.c.hash)).all():
        connection.execute(keys.update().where(keys.c.hash == key_hash).values(id=uuid.uuid4()))
    with op.batch_alter_table("core_api_keys", schema=None) as batch_op:
        batch_op.alter_column("id", existing_type=sa.Uuid(), nullable=False)
        batch_op.add_column(sa.Column("owner_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("revoked_at", services.core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_core_api_keys_id"), ["id"])
        batch_op.create_foreign_key(
            batch_op.f("fk_core_api_keys_owner_id_core_principals"), "core_principals", ["owner_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("core_api_keys", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_core_api_keys_owner_id_core_principals"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("uq_core_api_keys_id"), type_="unique")
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("owner_id")
        batch_op.drop_column("id")

    op.drop_table("core_memberships")
    with op.batch_alter_table("core_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_core_sessions_principal_id"))

    op.drop_table("core_sessions")
    op.drop_table("core_org_units")
    op.drop_table("core_principals")
    op.drop_table("core_pending_logins")
