"""initial schema: ingest, engine, notifier and api keys

Revision ID: 0001
Revises:
Create Date: 2026-11-22 15:28:30.616002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.core.db

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "core_api_keys",
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hash", name=op.f("pk_core_api_keys")),
    )
    op.create_table(
        "engine_documents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("org_unit", sa.String(length=200), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engine_documents")),
        sa.UniqueConstraint("kind", "org_unit", name=op.f("uq_engine_documents_kind_org_unit")),
    )
    op.create_table(
        "engine_outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("created_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engine_outbox")),
    )
    op.create_table(
        "engine_reviews",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("correlation_key", sa.String(length=600), nullable=False),
        sa.Column("open_key", sa.String(length=600), nullable=True),
        sa.Column("policy_id", sa.String(length=100), nullable=False),
        sa.Column("title", sa.String(length=600), nullable=False),
        sa.Column("category", sa.String(length=50), nullable=False),
        sa.Column("severity", sa.String(length=20), nullable=False),
        sa.Column("scope", sa.String(length=500), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("opened_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("phase_entered_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("due_at", services.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("escalate_after_s", sa.Double(), nullable=False),
        sa.Column("escalate_at", services.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("overdue_phase", sa.String(length=20), nullable=True),
        sa.Column("escalated_phase", sa.String(length=20), nullable=True),
        sa.Column("first_trigger_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_trigger_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("merged_into", sa.Uuid(), nullable=True),
        sa.Column("closed_at", services.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("event_sequence", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engine_reviews")),
        sa.UniqueConstraint("open_key", name=op.f("uq_engine_reviews_open_key")),
    )
    with op.batch_alter_table("engine_reviews", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_engine_reviews_category"), ["category"], unique=False)
        batch_op.create_index(batch_op.f("ix_engine_reviews_correlation_key"), ["correlation_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_engine_reviews_due_at"), ["due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_engine_reviews_escalate_at"), ["escalate_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_engine_reviews_state"), ["state"], unique=False)

    op.create_table(
        "ingest_duplicates",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("event_id", sa.String(length=500), nullable=False),
        sa.Column("kafka_topic", sa.String(length=300), nullable=False),
        sa.Column("kafka_partition", sa.Integer(), nullable=False),
        sa.Column("kafka_offset", sa.BigInteger(), nullable=False),
        sa.Column("received_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_duplicates")),
        sa.UniqueConstraint(
            "kafka_topic",
            "kafka_partition",
            "kafka_offset",
            name=op.f("uq_ingest_duplicates_kafka_topic_kafka_partition_kafka_offset"),
        ),
    )
    op.create_table(
        "ingest_outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("created_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_outbox")),
    )
    op.create_table(
        "ingest_rejections",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("kafka_topic", sa.String(length=300), nullable=False),
        sa.Column("kafka_partition", sa.Integer(), nullable=False),
        sa.Column("kafka_offset", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=True),
        sa.Column("event_id", sa.String(length=500), nullable=True),
        sa.Column("reason", sa.String(length=100), nullable=False),
        sa.Column("message", sa.String(length=2000), nullable=False),
        sa.Column("field", sa.String(length=300), nullable=True),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("received_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_rejections")),
        sa.UniqueConstraint(
            "kafka_topic",
            "kafka_partition",
            "kafka_offset",
            name=op.f("uq_ingest_rejections_kafka_topic_kafka_partition_kafka_offset"),
        ),
    )
    with op.batch_alter_table("ingest_rejections", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ingest_rejections_received_at"), ["received_at"], unique=False)

    op.create_table(
        "ingest_triggers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("event_id", sa.String(length=500), nullable=False),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=50), nullable=False),
        sa.Column("severity", sa.String(length=20), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("occurred_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("kafka_partition", sa.Integer(), nullable=False),
        sa.Column("kafka_offset", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_triggers")),
        sa.UniqueConstraint("source", "event_id", name=op.f("uq_ingest_triggers_source_event_id")),
    )
    with op.batch_alter_table("ingest_triggers", schema=None) as batch_op:
        batch_op.create_index("ix_ingest_triggers_category_received", ["category", "received_at"], unique=False)

    op.create_table(
        "notifier_subscriptions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("severities", sa.JSON(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("previous_secret", sa.String(length=200), nullable=True),
        sa.Column("previous_secret_expires_at", services.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("rate_limit_per_s", sa.Float(), nullable=True),
        sa.Column("failing_since", services.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("disabled_reason", sa.String(length=500), nullable=True),
        sa.Column("deleted_at", services.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifier_subscriptions")),
    )
    op.create_table(
        "engine_assessments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("review_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("risk_score", sa.Integer(), nullable=True),
        sa.Column("created_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["review_id"], ["engine_reviews.id"], name=op.f("fk_engine_assessments_review_id_engine_reviews")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engine_assessments")),
        sa.UniqueConstraint("review_id", "version", name=op.f("uq_engine_assessments_review_id_version")),
    )
    with op.batch_alter_table("engine_assessments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_engine_assessments_review_id"), ["review_id"], unique=False)

    op.create_table(
        "engine_document_versions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("document_id", sa.Uuid(), nullable=False),
        sa.Column("review_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("created_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("published_at", services.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("certified_by", sa.String(length=200), nullable=True),
        sa.Column("ack_due_days", sa.Double(), nullable=False),
        sa.Column("distribution", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["engine_documents.id"],
            name=op.f("fk_engine_document_versions_document_id_engine_documents"),
        ),
        sa.ForeignKeyConstraint(
            ["review_id"], ["engine_reviews.id"], name=op.f("fk_engine_document_versions_review_id_engine_reviews")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engine_document_versions")),
        sa.UniqueConstraint("document_id", "version", name=op.f("uq_engine_document_versions_document_id_version")),
    )
    with op.batch_alter_table("engine_document_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_engine_document_versions_document_id"), ["document_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_engine_document_versions_review_id"), ["review_id"], unique=False)

    op.create_table(
        "engine_timeline",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("review_id", sa.Uuid(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("occurred_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["review_id"], ["engine_reviews.id"], name=op.f("fk_engine_timeline_review_id_engine_reviews")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engine_timeline")),
        sa.UniqueConstraint("review_id", "sequence", name=op.f("uq_engine_timeline_review_id_sequence")),
    )
    op.create_table(
        "engine_transitions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("review_id", sa.Uuid(), nullable=False),
        sa.Column("from_state", sa.String(length=20), nullable=False),
        sa.Column("to_state", sa.String(length=20), nullable=False),
        sa.Column("at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.String(length=1000), nullable=True),
        sa.ForeignKeyConstraint(
            ["review_id"], ["engine_reviews.id"], name=op.f("fk_engine_transitions_review_id_engine_reviews")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engine_transitions")),
    )
    with op.batch_alter_table("engine_transitions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_engine_transitions_review_id"), ["review_id"], unique=False)

    op.create_table(
        "engine_triggers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("event_id", sa.String(length=500), nullable=False),
        sa.Column("category", sa.String(length=50), nullable=False),
        sa.Column("severity", sa.String(length=20), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("occurred_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("policy_id", sa.String(length=100), nullable=False),
        sa.Column("correlation_key", sa.String(length=600), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=False),
        sa.Column("review_id", sa.Uuid(), nullable=True),
        sa.Column("decided_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["review_id"], ["engine_reviews.id"], name=op.f("fk_engine_triggers_review_id_engine_reviews")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engine_triggers")),
        sa.UniqueConstraint("source", "event_id", name=op.f("uq_engine_triggers_source_event_id")),
    )
    with op.batch_alter_table("engine_triggers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_engine_triggers_category"), ["category"], unique=False)
        batch_op.create_index(
            "ix_engine_triggers_key_time", ["policy_id", "correlation_key", "occurred_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_engine_triggers_review_id"), ["review_id"], unique=False)

    op.create_table(
        "notifier_deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("msg_id", sa.String(length=100), nullable=False),
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("review_id", sa.String(length=100), nullable=True),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("traceparent", sa.String(length=55), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", services.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("locked_until", services.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("ready", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["notifier_subscriptions.id"],
            name=op.f("fk_notifier_deliveries_subscription_id_notifier_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifier_deliveries")),
        sa.UniqueConstraint("msg_id", "subscription_id", name=op.f("uq_notifier_deliveries_msg_id_subscription_id")),
    )
    with op.batch_alter_table("notifier_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_notifier_deliveries_due", ["status", "ready", "next_attempt_at"], unique=False)
        batch_op.create_index(
            "ix_notifier_deliveries_order", ["subscription_id", "review_id", "sequence"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_notifier_deliveries_subscription_id"), ["subscription_id"], unique=False)

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

    op.create_table(
        "engine_acknowledgements",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("version_id", sa.Uuid(), nullable=False),
        sa.Column("recipient", sa.String(length=200), nullable=False),
        sa.Column("org_unit", sa.String(length=200), nullable=True),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("due_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", services.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reminded_at", services.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["engine_document_versions.id"],
            name=op.f("fk_engine_acknowledgements_version_id_engine_document_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engine_acknowledgements")),
        sa.UniqueConstraint("version_id", "recipient", name=op.f("uq_engine_acknowledgements_version_id_recipient")),
    )
    with op.batch_alter_table("engine_acknowledgements", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_engine_acknowledgements_due_at"), ["due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_engine_acknowledgements_version_id"), ["version_id"], unique=False)

    op.create_table(
        "engine_approvals",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("assessment_id", sa.Uuid(), nullable=False),
        sa.Column("approver", sa.String(length=200), nullable=False),
        sa.Column("verdict", sa.String(length=20), nullable=False),
        sa.Column("comment", sa.String(length=2000), nullable=True),
        sa.Column("at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["assessment_id"],
            ["engine_assessments.id"],
            name=op.f("fk_engine_approvals_assessment_id_engine_assessments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_engine_approvals")),
        sa.UniqueConstraint("assessment_id", "approver", name=op.f("uq_engine_approvals_assessment_id_approver")),
    )
    with op.batch_alter_table("engine_approvals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_engine_approvals_assessment_id"), ["assessment_id"], unique=False)

    op.create_table(
        "notifier_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.Uuid(), nullable=False),
        sa.Column("attempted_at", services.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("response", sa.String(length=1000), nullable=True),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["notifier_deliveries.id"],
            name=op.f("fk_notifier_attempts_delivery_id_notifier_deliveries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifier_attempts")),
    )
    with op.batch_alter_table("notifier_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notifier_attempts_delivery_id"), ["delivery_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("notifier_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifier_attempts_delivery_id"))

    op.drop_table("notifier_attempts")
    with op.batch_alter_table("engine_approvals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_engine_approvals_assessment_id"))

    op.drop_table("engine_approvals")
    with op.batch_alter_table("engine_acknowledgements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_engine_acknowledgements_version_id"))
        batch_op.drop_index(batch_op.f("ix_engine_acknowledgements_due_at"))

    op.drop_table("engine_acknowledgements")
    with op.batch_alter_table("notifier_notices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifier_notices_subscription_id"))

    op.drop_table("notifier_notices")
    with op.batch_alter_table("notifier_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifier_deliveries_subscription_id"))
        batch_op.drop_index("ix_notifier_deliveries_order")
        batch_op.drop_index("ix_notifier_deliveries_due")

    op.drop_table("notifier_deliveries")
    with op.batch_alter_table("engine_triggers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_engine_triggers_review_id"))
        batch_op.drop_index("ix_engine_triggers_key_time")
        batch_op.drop_index(batch_op.f("ix_engine_triggers_category"))

    op.drop_table("engine_triggers")
    with op.batch_alter_table("engine_transitions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_engine_transitions_review_id"))

    op.drop_table("engine_transitions")
    op.drop_table("engine_timeline")
    with op.batch_alter_table("engine_document_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_engine_document_versions_review_id"))
        batch_op.drop_index(batch_op.f("ix_engine_document_versions_document_id"))

    op.drop_table("engine_document_versions")
    with op.batch_alter_table("engine_assessments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_engine_assessments_review_id"))

    op.drop_table("engine_assessments")
    op.drop_table("notifier_subscriptions")
    with op.batch_alter_table("ingest_triggers", schema=None) as batch_op:
        batch_op.drop_index("ix_ingest_triggers_category_received")

    op.drop_table("ingest_triggers")
    with op.batch_alter_table("ingest_rejections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ingest_rejections_received_at"))

    op.drop_table("ingest_rejections")
    op.drop_table("ingest_outbox")
    op.drop_table("ingest_duplicates")
    with op.batch_alter_table("engine_reviews", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_engine_reviews_state"))
        batch_op.drop_index(batch_op.f("ix_engine_reviews_escalate_at"))
        batch_op.drop_index(batch_op.f("ix_engine_reviews_due_at"))
        batch_op.drop_index(batch_op.f("ix_engine_reviews_correlation_key"))
        batch_op.drop_index(batch_op.f("ix_engine_reviews_category"))

    op.drop_table("engine_reviews")
    op.drop_table("engine_outbox")
    op.drop_table("engine_documents")
    op.drop_table("core_api_keys")
