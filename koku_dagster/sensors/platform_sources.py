"""``platform_sources_sensor``: Platform Sources events -> source and provider records."""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import sqlalchemy as sa

from koku_dagster.assets.ingest import ingest_run_request, provider_month_ingest
from koku_dagster.assets.partitions import providers_partitions
from koku_dagster.assets.source_records import provider_records, source_records
from koku_dagster.infra.db.types import utcnow
from koku_dagster.ingest.polling import months_to_ingest
from koku_dagster.ingest.reachability import claim_pending_ingestions
from koku_dagster.resources import ApplicationDatabase, KafkaResource, ObjectStoreResource, PlatformSourcesResource
from koku_dagster.resources.ingestion import IngestionResource
from koku_dagster.sources.sync import SourcesSync, SyncReport, provider_uuids, record_counts, waiting_counts


def _metadata(report: SyncReport, counts: dict[str, dict[str, int]]) -> dict[str, dg.RawMetadataValue]:
    batch = report.batch
    return {
        "events_read": batch.read,
        "events_applied": batch.applied,
        "events_ignored": batch.ignored,
        "events_rejected": len(batch.rejected),
        "events_parked": batch.parked,
        "events_unparked": batch.unparked,
        "events_carried": batch.carried,
        "sources_refused_by_database": len(batch.refused_sources),
        "waiting": dg.MetadataValue.json(counts["waiting"]),
        "sources_changed": batch.sources_changed,
        "start_offsets": dg.MetadataValue.json({str(p): o for p, o in report.start_offsets.items()}),
        "committed_offsets": dg.MetadataValue.json({f"{t}[{p}]": o for (t, p), o in batch.commit_offsets.items()}),
        "sources_by_type": dg.MetadataValue.json(counts["sources_by_type"]),
        "sources_by_state": dg.MetadataValue.json(counts["sources_by_state"]),
        "rejected_messages_total": counts["rejected_total"]["messages"],
        "platform_sources_calls": batch.api_calls,
        "tick_seconds": round(report.seconds, 3),
    }


def _ingest_requests(engine: sa.Engine, initial_months: int, now: datetime) -> list[dg.RunRequest]:
    """First ingestion of new providers, and re-ingestion after a billing or credential change, once the
    source passed its reachability check (``source_reachability_sensor``)."""
    requests = []
    for pending in claim_pending_ingestions(engine):
        kind = "reingest" if pending.force else "new"
        for month in months_to_ingest(False, now.date(), initial_months):
            key = f"{kind}:{pending.provider_uuid}:{month:%Y-%m}:{pending.stamp}"
            requests.append(ingest_run_request(pending.provider_uuid, month, key, force=pending.force))
    return requests


def _run_sync(
    app_db: ApplicationDatabase,
    platform_sources: PlatformSourcesResource,
    kafka: KafkaResource,
    object_store: ObjectStoreResource,
) -> SyncReport:
    """One pass of the sources integration: events, provider operations, status pushes."""
    client = platform_sources.client()
    store = object_store.object_store()

    def purge_data(provider_uuid: str) -> None:
        store.delete_provider_data(provider_uuid)  # how many paths it removed is not needed

    try:
        sync = SourcesSync(
            app_db.engine(),
            client,
            bootstrap=kafka.bootstrap_servers,
            topic=kafka.sources_topic,
            local_roots=object_store.roots(),
            purge_data=purge_data,
            security=kafka.security(),
        )
        return sync.run_once()
    finally:
        client.close()


def _partition_requests(
    context: dg.SensorEvaluationContext, desired: set[str]
) -> list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest]:
    """Partitions follow the provider table, so a tick that died after its commit is healed here."""
    assert providers_partitions.name is not None  # defined with a name
    existing = set(context.instance.get_dynamic_partitions(providers_partitions.name))
    to_add, to_delete = sorted(desired - existing), sorted(existing - desired)
    requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    if to_add:
        requests.append(providers_partitions.build_add_request(to_add))
    if to_delete:
        requests.append(providers_partitions.build_delete_request(to_delete))
    return requests


def _log_problems(context: dg.SensorEvaluationContext, report: SyncReport) -> None:
    for rejection in report.batch.rejected:
        pos = rejection.position
        context.log.warning(f"rejected {pos.topic}[{pos.partition}]@{pos.offset}: {rejection.reason}")
    for op in report.operations:
        if op.outcome != "done":
            context.log.warning(f"provider {op.operation} for source {op.source_id}: {op.outcome}: {op.error}")
    if not report.api_available:
        context.log.warning("Platform Sources is unreachable; events wait in Kafka")
    if not report.kafka_available:
        context.log.warning("Kafka is unreachable; events wait")
    if not report.offsets_committed:
        context.log.warning("Kafka did not confirm an offset commit in time; those events will be read again")


def _skip_reason(report: SyncReport, engine: sa.Engine) -> str:
    """Why the tick did nothing, and what waits (deletions, retried operations, parked events) if anything."""
    if report.busy:
        reason = "another evaluation of this sensor is still running"
    elif not report.api_available or not report.kafka_available:
        reason = "Platform Sources or Kafka unreachable; events wait"
    else:
        reason = "no new events"
    waiting = {name: n for name, n in waiting_counts(engine).items() if n}
    if waiting:
        reason += "; waiting: " + ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in waiting.items())
    return reason


@dg.sensor(
    name="platform_sources_sensor",
    minimum_interval_seconds=10,
    jobs=[provider_month_ingest],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Consumes Platform Sources events (KOKU_SOURCES_TOPIC, group hccm-sources), keeps source and "
        "provider records, reports availability back and keeps the `providers` partitions in step."
    ),
)
def platform_sources_sensor(
    context: dg.SensorEvaluationContext,
    app_db: ApplicationDatabase,
    platform_sources: PlatformSourcesResource,
    kafka: KafkaResource,
    object_store: ObjectStoreResource,
    ingestion: IngestionResource,
) -> dg.SensorResult:
    engine = app_db.engine()
    report = _run_sync(app_db, platform_sources, kafka, object_store)
    requests = _partition_requests(context, provider_uuids(engine))
    _log_problems(context, report)
    batch = report.batch

    run_requests = _ingest_requests(engine, ingestion.initial_ingest_num_months, utcnow())
    changed = batch.read or batch.unparked or report.operations or requests or report.statuses.sent or run_requests
    if not changed:
        return dg.SensorResult(skip_reason=_skip_reason(report, engine), dynamic_partitions_requests=requests)
    counts = record_counts(engine)
    meta = _metadata(report, counts)
    context.log.info(
        f"{batch.read} events ({batch.applied} applied, {batch.ignored} ignored, {len(batch.rejected)} rejected); "
        f"{len(report.created)} providers created, {len(report.deleted)} deleted; "
        f"{report.statuses.sent} statuses sent in {report.seconds:.2f}s"
    )
    provider_meta: dict[str, dg.RawMetadataValue] = {
        "providers_by_type": dg.MetadataValue.json(counts["providers_by_type"]),
        "providers_by_state": dg.MetadataValue.json(counts["providers_by_state"]),
        "providers_created": len(report.created),
        "providers_deleted": len(report.deleted),
        "operations_failed": sum(1 for op in report.operations if op.outcome in ("failed", "retry", "invalid")),
        "deletions_waiting": counts["waiting"]["deletions"],
        "operations_retrying": counts["waiting"]["operations_retrying"],
        "statuses_sent": report.statuses.sent,
        "dagster/row_count": sum(counts["providers_by_type"].values()),
    }
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=requests,
        asset_events=[
            dg.AssetMaterialization(
                source_records.key,
                metadata={**meta, "dagster/row_count": sum(counts["sources_by_type"].values())},
            ),
            dg.AssetMaterialization(provider_records.key, metadata=provider_meta),
        ],
    )
