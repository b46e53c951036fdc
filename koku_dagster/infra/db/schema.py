"""Application tables, in Koku's names, as SQLAlchemy Core tables.

Columns beyond Koku's hold the durable provider-operation queue (``op_*``) and the
status push state, so that no pending work lives in memory.
"""

from __future__ import annotations

import sqlalchemy as sa

from koku_dagster.infra.db.types import JsonColumn, UTCDateTime

metadata = sa.MetaData()

customer = sa.Table(
    "api_customer",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("org_id", sa.String(36), nullable=False, unique=True),
    sa.Column("account_id", sa.String(150), nullable=True),
    sa.Column("schema_name", sa.Text, nullable=False, unique=True),
    sa.Column("date_created", UTCDateTime, nullable=False),
    sa.Column("date_updated", UTCDateTime, nullable=False),
)

sources = sa.Table(
    "api_sources",
    metadata,
    sa.Column("source_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("source_uuid", sa.String(36), nullable=True, unique=True),
    sa.Column("name", sa.Text, nullable=True),
    sa.Column("source_type", sa.String(50), nullable=False, server_default=""),
    sa.Column("auth_header", sa.Text, nullable=True),
    sa.Column("account_id", sa.String(150), nullable=True),
    sa.Column("org_id", sa.String(36), nullable=True),
    sa.Column("offset", sa.BigInteger, nullable=False),
    sa.Column("authentication", JsonColumn, nullable=False),
    sa.Column("billing_source", JsonColumn, nullable=True),
    sa.Column("koku_uuid", sa.String(36), nullable=True, unique=True),
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("pending_update", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("pending_delete", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("out_of_order_delete", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("status", JsonColumn, nullable=True),
    sa.Column("updated_timestamp", UTCDateTime, nullable=False),
    # Durable provider-operation state (our addition: Koku keeps this in memory).
    sa.Column("op_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("op_next_attempt_at", UTCDateTime, nullable=True),
    sa.Column("op_last_error", sa.Text, nullable=True),
    sa.Column("op_failed", sa.Boolean, nullable=False, server_default=sa.false()),
    # True while ``status`` has not yet been PATCHed to Platform Sources.
    sa.Column("status_push_pending", sa.Boolean, nullable=False, server_default=sa.false()),
    # The cost-management application's id on Platform Sources (schema version 2).
    sa.Column("application_id", sa.BigInteger, nullable=True),
)

provider_authentication = sa.Table(
    "api_providerauthentication",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("credentials", JsonColumn, nullable=False),
    # sha256 of the canonical JSON: lets get-or-create find the exact value by index.
    sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
)

provider_billing_source = sa.Table(
    "api_providerbillingsource",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("data_source", JsonColumn, nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
)

provider = sa.Table(
    "api_provider",
    metadata,
    sa.Column("uuid", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("type", sa.String(50), nullable=False),
    sa.Column("customer_id", sa.Integer, sa.ForeignKey("api_customer.id"), nullable=True),
    sa.Column("authentication_id", sa.Integer, sa.ForeignKey("api_providerauthentication.id"), nullable=True),
    sa.Column("billing_source_id", sa.Integer, sa.ForeignKey("api_providerbillingsource.id"), nullable=True),
    sa.Column("setup_complete", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_timestamp", UTCDateTime, nullable=False),
    sa.Column("polling_timestamp", UTCDateTime, nullable=True),
    sa.Column("data_updated_timestamp", UTCDateTime, nullable=True),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    # Reachability (our addition, schema version 4): the outcome of the last check (NULL: not checked since
    # creation or the last credentials/billing change), its fixed user message, and when it ran (NULL: due at
    # once). ``settings_version`` counts updates, so a check of settings changed meanwhile is not recorded.
    sa.Column("reachable", sa.Boolean, nullable=True),
    sa.Column("reachability_error", sa.Text, nullable=True),
    sa.Column("reachability_checked_timestamp", UTCDateTime, nullable=True),
    sa.Column("settings_version", sa.Integer, nullable=False, server_default="0"),
    # The ingestion waiting for the first successful check: ``new`` (creation) or ``reingest`` (billing change).
    sa.Column("ingest_pending", sa.String(16), nullable=True),
    sa.UniqueConstraint("authentication_id", "billing_source_id", "customer_id", name="uq_provider_account"),
)

rejected_message = sa.Table(
    "sources_rejected_message",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("partition", sa.Integer, nullable=False),
    sa.Column("offset", sa.BigInteger, nullable=False),
    sa.Column("event_type", sa.Text, nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("topic", "partition", "offset", name="uq_rejected_position"),
)

message_retry = sa.Table(
    "sources_message_retry",
    metadata,
    sa.Column("topic", sa.Text, primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True),
    sa.Column("offset", sa.BigInteger, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("last_error", sa.Text, nullable=False),
)

consumer_progress = sa.Table(
    "kafka_consumer_progress",
    metadata,
    sa.Column("group_id", sa.Text, primary_key=True),
    sa.Column("topic", sa.Text, primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True),
    # Highest offset whose effects were committed: anything at or below it is a replay.
    sa.Column("high_water", sa.BigInteger, nullable=False),
)

manifest = sa.Table(
    "reporting_common_costusagereportmanifest",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("provider_id", sa.String(36), nullable=False, index=True),
    sa.Column("assembly_id", sa.Text, nullable=False),
    sa.Column("billing_period_start_datetime", UTCDateTime, nullable=False),
    sa.Column("num_total_files", sa.Integer, nullable=False),
    sa.Column("creation_datetime", UTCDateTime, nullable=False),
    sa.Column("export_datetime", UTCDateTime, nullable=True),
    sa.Column("completed_datetime", UTCDateTime, nullable=True),
    sa.Column("state", JsonColumn, nullable=True),
    sa.UniqueConstraint("provider_id", "assembly_id", name="uq_manifest_assembly"),
)

report_status = sa.Table(
    "reporting_common_costusagereportstatus",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "manifest_id",
        sa.Integer,
        sa.ForeignKey("reporting_common_costusagereportmanifest.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("report_name", sa.Text, nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("started_datetime", UTCDateTime, nullable=True),
    sa.Column("completed_datetime", UTCDateTime, nullable=True),
    sa.Column("etag", sa.Text, nullable=True),
    sa.UniqueConstraint("manifest_id", "report_name", name="uq_report_status_file"),
)

ocp_payload_upload = sa.Table(
    "ocp_payload_upload",
    metadata,
    # One row per OpenShift payload announcement; our addition (schema version 3).
    # The announcement's identity header is never stored; ``url`` may carry a signed query string and
    # is only ever shown without it.
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(255), nullable=False, unique=True),
    sa.Column("org_id", sa.String(36), nullable=False),
    sa.Column("account", sa.String(150), nullable=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("partition", sa.Integer, nullable=False),
    sa.Column("offset", sa.BigInteger, nullable=False),
    # ``pending`` until processed, then ``success`` or ``failure`` (with ``reason``).
    sa.Column("state", sa.String(16), nullable=False, server_default="pending", index=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("manifest_uuid", sa.String(64), nullable=True),
    sa.Column("cluster_id", sa.Text, nullable=True),
    sa.Column("provider_uuid", sa.String(36), nullable=True),
    # Months whose line items changed (``YYYY-MM-01``), to be summarised.
    sa.Column("months", JsonColumn, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("processed_at", UTCDateTime, nullable=True),
    # Orchestration state: the processing run and the summary runs were handed to Dagster, and the
    # validation result was delivered to ``KOKU_VALIDATION_TOPIC``.
    sa.Column("run_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("summaries_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("validation_sent", sa.Boolean, nullable=False, server_default=sa.false()),
)

schema_migration = sa.Table(
    "koku_schema_migration",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)

sources_parked_message = sa.Table(
    "sources_parked_message",
    metadata,
    # A Platform Sources event whose API calls failed (schema version 5): its offset is committed and it
    # is retried from here (read again from Kafka by position), so no other source waits behind it.
    # Only the position is kept: never the message, whose headers carry the identity.
    sa.Column("topic", sa.Text, primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True),
    sa.Column("offset", sa.BigInteger, primary_key=True),
    sa.Column("source_id", sa.BigInteger, nullable=False, index=True),
    sa.Column("event_type", sa.Text, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("parked_at", UTCDateTime, nullable=False),
)

sync_lease = sa.Table(
    "sources_sync_lease",
    metadata,
    # Who runs the sources pass now (schema version 5): overlapping evaluations never apply a batch twice.
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=True),
    sa.Column("expires_at", UTCDateTime, nullable=True),
)
