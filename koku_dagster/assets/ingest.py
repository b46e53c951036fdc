"""Provider x billing-month assets: manifest -> report files -> line items -> daily -> summary.

Each asset is one step of :mod:`koku_dagster.ingest`; this module only wires partitions,
records (manifest and file statuses) and metadata. A manifest that was fully processed before
is not processed again: ``report_manifest`` then materializes nothing and the rest of the run
is skipped, unless the run is forced (``ManifestConfig.force``, used after a billing change).
"""


from concurrent.futures import ThreadPoolExecutor
from datetime import date

import dagster as dg

from koku_dagster.assets.partitions import provider_month_partitions
from koku_dagster.db import manifests as records
from koku_dagster.ingest import aws
from koku_dagster.ingest.aws_source import Manifest, ReportFile, ReportSource
from koku_dagster.ingest.errors import IngestError
from koku_dagster.ingest.paths import csv_dir, daily_dir, line_items_dir
from koku_dagster.db.types import utcnow
from koku_dagster.orchestration.polling import billing_months
from koku_dagster.orchestration.provider_context import ProviderContext, load_provider, report_availability
from koku_dagster.orchestration.report_sources import ArchivedReports, archive_file, report_source_for
from koku_dagster.resources import ApplicationDatabase, ObjectStoreResource
from koku_dagster.resources.ingestion import IngestionResource
from koku_dagster.warehouse import refresh_views

GROUP = "ingest"


class ManifestConfig(dg.Config):
    force: bool = False


def _partition(context: dg.AssetExecutionContext) -> tuple[str, date]:
    keys = context.partition_key.keys_by_dimension  # type: ignore[attr-defined]
    return keys["provider"], date.fromisoformat(keys["billing_month"])


def _provider(app_db: ApplicationDatabase, uuid: str) -> ProviderContext:
    ctx = load_provider(app_db.engine(), uuid)
    if ctx is None:
        raise dg.Failure(description=f"provider {uuid} does not exist (deleted?)")
    return ctx


def _source(ctx: ProviderContext, object_store: ObjectStoreResource) -> ReportSource:
    return report_source_for(ctx, object_store.roots(), object_store.endpoint_url)


def _current_manifest(source: ReportSource, month: date, recorded: records.ManifestRecord) -> Manifest:
    """The manifest being processed, as the source shows it now (the same assembly as recorded)."""
    manifest = source.find_manifest(month)
    if manifest is None or manifest.assembly_id != recorded.assembly_id:
        raise dg.Failure(description="the month's manifest changed during the run; the next poll picks it up")
    return manifest


def _fail(context: dg.AssetExecutionContext, app_db: ApplicationDatabase, manifest_id: int | None,
          step: records.Step, error: Exception, provider_uuid: str, *, unavailable: bool = False) -> dg.Failure:
    message = f"{type(error).__name__}: {error}"
    context.log.error(message)
    engine = app_db.engine()
    if manifest_id is not None:
        records.set_step(engine, manifest_id, step, "failed", message)
    if unavailable:
        report_availability(engine, provider_uuid, str(error))
    return dg.Failure(description=message)


def _purge_expired(
    context: dg.AssetExecutionContext,
    app_db: ApplicationDatabase,
    object_store: ObjectStoreResource,
    ingestion: IngestionResource,
    uuid: str,
) -> None:
    """Drop the provider's months older than ``KOKU_RETAIN_NUM_MONTHS`` (files and manifests)."""
    cutoff = billing_months(utcnow().date(), ingestion.retain_num_months)[-1]
    files = object_store.store().delete_months_before(uuid, cutoff)
    manifests = records.purge_manifests_before(app_db.engine(), uuid, cutoff)
    if files or manifests:
        context.log.info(f"retention: removed {files} month folder(s) and {manifests} manifest(s) before {cutoff}")


def _latest_manifest(app_db: ApplicationDatabase, uuid: str, month: date) -> records.ManifestRecord:
    found = records.latest_manifest(app_db.engine(), uuid, month)
    if found is None:
        raise dg.Failure(description="no manifest recorded for this provider month; materialize report_manifest")
    return found


@dg.asset(
    partitions_def=provider_month_partitions,
    group_name=GROUP,
    kinds={"aws", "json"},
    output_required=False,
    description=(
        "The cost report manifest of a provider's billing month (AWS CUR manifest), recorded in "
        "`reporting_common_costusagereportmanifest` with one status row per report file. Nothing is "
        "materialized when the same assembly was fully processed before (unless forced)."
    ),
)
def report_manifest(
    context: dg.AssetExecutionContext,
    config: ManifestConfig,
    app_db: ApplicationDatabase,
    object_store: ObjectStoreResource,
    ingestion: IngestionResource,
):
    uuid, month = _partition(context)
    ctx = _provider(app_db, uuid)
    engine = app_db.engine()
    try:
        manifest = _source(ctx, object_store).find_manifest(month)
    except Exception as exc:  # noqa: BLE001 - bad paths, missing buckets, refused credentials
        raise _fail(context, app_db, None, "download", exc, uuid, unavailable=True) from None
    report_availability(engine, uuid, None)
    _purge_expired(context, app_db, object_store, ingestion, uuid)
    if manifest is None:
        context.log.info(f"no manifest for {month:%Y-%m} yet")
        return
    if not config.force and records.is_fully_processed(engine, uuid, manifest.assembly_id):
        context.log.info(f"assembly {manifest.assembly_id} was fully processed before; nothing to do")
        return
    recorded = records.record_manifest(
        engine, uuid, manifest.assembly_id, month, [f.name for f in manifest.files], manifest.export_datetime
    )
    records.delete_manifests(engine, records.other_month_manifests(engine, uuid, month, manifest.assembly_id))
    yield dg.MaterializeResult(
        metadata={
            "assembly_id": manifest.assembly_id,
            "manifest_id": recorded.id,
            "report_name": manifest.report_name,
            "files": len(manifest.files),
            "export_datetime": manifest.export_datetime.isoformat(),
            "provider_type": ctx.type,
        }
    )


@dg.asset(
    partitions_def=provider_month_partitions,
    group_name=GROUP,
    deps=[report_manifest],
    kinds={"csv"},
    description="The month's report files, fetched with etag checks and archived under `data/csv/...`.",
)
def report_files(
    context: dg.AssetExecutionContext,
    app_db: ApplicationDatabase,
    object_store: ObjectStoreResource,
) -> dg.MaterializeResult:
    uuid, month = _partition(context)
    ctx = _provider(app_db, uuid)
    engine = app_db.engine()
    recorded = _latest_manifest(app_db, uuid, month)
    store = object_store.store()
    archive = csv_dir(store.local_root, ctx.schema, ctx.storage_type, uuid, month)
    records.set_step(engine, recorded.id, "download", "start")
    try:
        source = _source(ctx, object_store)
        manifest = _current_manifest(source, month, recorded)
        statuses = records.file_statuses(engine, recorded.id)

        def fetch(file: ReportFile) -> tuple[bool, int]:
            """Archive one file unless the archived copy has the same etag; (fetched, size)."""
            etag = source.etag(file.key)
            target = archive / file.name
            if statuses.get(file.name, {}).get("etag") == etag[:64] and target.exists():
                return False, target.stat().st_size
            size = archive_file(source, file.key, target)
            records.set_file_status(engine, recorded.id, file.name, records.FileStatus.DOWNLOADING, etag=etag)
            return True, size

        with ThreadPoolExecutor(max_workers=4) as pool:
            outcomes = list(pool.map(fetch, manifest.files))
        fetched = sum(1 for done, _ in outcomes if done)
        skipped = len(outcomes) - fetched
        size = sum(n for _, n in outcomes)
        keep = {f.name for f in manifest.files}
        for stale in archive.glob("*") if archive.exists() else []:
            if stale.is_file() and stale.name not in keep:
                stale.unlink()  # files of a replaced assembly
    except IngestError as exc:
        for name in records.file_statuses(engine, recorded.id):
            records.set_file_status(engine, recorded.id, name, records.FileStatus.FAILED)
        raise _fail(context, app_db, recorded.id, "download", exc, uuid) from None
    store.publish(archive)
    records.set_step(engine, recorded.id, "download", "end")
    return dg.MaterializeResult(
        metadata={
            "assembly_id": recorded.assembly_id,
            "files": len(manifest.files),
            "fetched": fetched,
            "unchanged": skipped,
            "bytes": size,
            "path": dg.MetadataValue.path(str(archive)),
        }
    )


@dg.asset(
    partitions_def=provider_month_partitions,
    group_name=GROUP,
    deps=[report_files],
    kinds={"parquet", "pyarrow"},
    description=(
        "Line items as typed Parquet (Koku's column normalisation, user tags folded into one JSON column), "
        "one file per report file, under `data/parquet/...`; the month is replaced whole."
    ),
)
def line_items(
    context: dg.AssetExecutionContext, app_db: ApplicationDatabase, object_store: ObjectStoreResource
) -> dg.MaterializeResult:
    uuid, month = _partition(context)
    ctx = _provider(app_db, uuid)
    engine = app_db.engine()
    recorded = _latest_manifest(app_db, uuid, month)
    store = object_store.store()
    out_root = store.local_root
    manifest = _current_manifest(_source(ctx, object_store), month, recorded)
    archive = csv_dir(out_root, ctx.schema, ctx.storage_type, uuid, month)
    store.fetch(archive)
    records.set_step(engine, recorded.id, "processing", "start")
    for file in manifest.files:
        records.set_file_status(engine, recorded.id, file.name, records.FileStatus.PROCESSING)
    try:
        result = aws.convert_manifest(
            ArchivedReports(archive, manifest), manifest, schema=ctx.schema, provider_uuid=uuid, out_root=out_root
        )
    except IngestError as exc:
        for file in manifest.files:
            records.set_file_status(engine, recorded.id, file.name, records.FileStatus.FAILED)
        raise _fail(context, app_db, recorded.id, "processing", exc, uuid) from None
    store.publish(result.partition)
    for file in manifest.files:
        records.set_file_status(engine, recorded.id, file.name, records.FileStatus.DONE)
    records.mark_setup_complete(engine, uuid)
    records.set_step(engine, recorded.id, "processing", "end")
    meta = result.metadata()
    return dg.MaterializeResult(
        metadata={
            **{k: v for k, v in meta.items() if k != "partition"},
            "path": dg.MetadataValue.path(meta["partition"]),
            "dagster/row_count": result.stats.rows,
        }
    )


@dg.asset(
    partitions_def=provider_month_partitions,
    group_name=GROUP,
    deps=[line_items],
    kinds={"parquet", "duckdb"},
    description="Daily line items: the month's line items aggregated per day and resource, by DuckDB.",
)
def daily_line_items(
    context: dg.AssetExecutionContext,
    app_db: ApplicationDatabase,
    object_store: ObjectStoreResource,
    ingestion: IngestionResource,
) -> dg.MaterializeResult:
    uuid, month = _partition(context)
    ctx = _provider(app_db, uuid)
    store = object_store.store()
    store.fetch(line_items_dir(store.local_root, ctx.schema, ctx.storage_type, uuid, month))
    result = aws.build_daily(
        schema=ctx.schema, provider_uuid=uuid, month=month, out_root=store.local_root, work_dir=ingestion.work_dir()
    )
    store.publish(result.partition)
    return dg.MaterializeResult(
        metadata={"path": dg.MetadataValue.path(str(result.partition)), "files": len(result.files),
                  "bytes": result.bytes, "dagster/row_count": result.rows}
    )


SUMMARY_CHECKS = [
    dg.AssetCheckSpec("summary_cost_matches_raw", asset="daily_summary",
                      description="Summary and daily unblended/blended cost equal the raw report's, to the cent."),
    dg.AssetCheckSpec("no_rows_outside_month", asset="daily_summary",
                      description="No line item falls outside the billing month."),
    dg.AssetCheckSpec("row_counts_consistent", asset="daily_summary",
                      description="Every source row became a line item; daily and summary rows exist when line items do."),
]


@dg.asset(
    partitions_def=provider_month_partitions,
    group_name=GROUP,
    deps=[daily_line_items],
    kinds={"parquet", "duckdb"},
    pool="duckdb_warehouse",
    check_specs=SUMMARY_CHECKS,
    description=(
        "The provider month of its summary table (AWS: `reporting_awscostentrylineitem_daily_summary`), computed "
        "by DuckDB from the daily line items, under `data/summary/{table}/...`; also refreshes the view in "
        "`$KOKU_HOME/warehouse.duckdb`."
    ),
)
def daily_summary(
    context: dg.AssetExecutionContext,
    app_db: ApplicationDatabase,
    object_store: ObjectStoreResource,
    ingestion: IngestionResource,
):
    uuid, month = _partition(context)
    ctx = _provider(app_db, uuid)
    engine = app_db.engine()
    recorded = _latest_manifest(app_db, uuid, month)
    store = object_store.store()
    out_root = store.local_root
    store.fetch(line_items_dir(out_root, ctx.schema, ctx.storage_type, uuid, month))  # footers hold raw totals
    store.fetch(daily_dir(out_root, ctx.schema, ctx.storage_type, uuid, month))
    records.set_step(engine, recorded.id, "summary", "start")
    result = aws.build_summary(
        schema=ctx.schema, provider_uuid=uuid, month=month, out_root=out_root, work_dir=ingestion.work_dir()
    )
    store.publish(result.partition)
    totals = aws.month_totals(schema=ctx.schema, provider_uuid=uuid, month=month, out_root=out_root)
    records.set_step(engine, recorded.id, "summary", "end")
    records.mark_manifest_complete(engine, recorded.id, uuid)
    refresh_views(ingestion.warehouse_path(), out_root)
    yield dg.MaterializeResult(
        metadata={
            "table": aws.SUMMARY_TABLE,
            "path": dg.MetadataValue.path(str(result.partition)),
            "dagster/row_count": result.rows,
            "bytes": result.bytes,
            "unblended_cost": str(totals.summary_unblended_cost),
            "blended_cost": str(totals.summary_blended_cost),
            "assembly_id": recorded.assembly_id,
        }
    )
    meta = totals.metadata()
    yield dg.AssetCheckResult(check_name="summary_cost_matches_raw", passed=totals.costs_match, metadata=meta)
    yield dg.AssetCheckResult(
        check_name="no_rows_outside_month",
        passed=totals.summary_rows_outside_month == 0,
        metadata={
            "summary_rows_outside_month": totals.summary_rows_outside_month,
            "report_rows_left_out_as_outside_month": totals.rows_outside_month,
        },
    )
    consistent = totals.line_item_rows + totals.rows_outside_month + totals.rows_without_usage_start == totals.source_rows and (
        totals.line_item_rows == 0 or (totals.daily_rows > 0 and totals.summary_rows > 0)
    )
    yield dg.AssetCheckResult(check_name="row_counts_consistent", passed=consistent, metadata=meta)


INGEST_ASSETS = [report_manifest, report_files, line_items, daily_line_items, daily_summary]

provider_month_ingest = dg.define_asset_job(
    "provider_month_ingest",
    selection=dg.AssetSelection.assets(*INGEST_ASSETS),
    description="Ingest one provider's billing month, from manifest to summary.",
    executor_def=dg.in_process_executor,  # the steps run one after another; no process per step
)


#: The steps that rebuild a month from the line items already stored (OpenShift payloads write those).
SUMMARY_ASSETS = [daily_line_items, daily_summary]


def ingest_run_request(
    provider_uuid: str, month: date, run_key: str, *, force: bool = False, summary_only: bool = False
) -> dg.RunRequest:
    """A run of :data:`provider_month_ingest` for one provider month (only its summary steps if ``summary_only``)."""
    partition_key = dg.MultiPartitionKey({"provider": provider_uuid, "billing_month": month.isoformat()})
    tags = {"koku/provider": provider_uuid}
    if summary_only:
        return dg.RunRequest(
            run_key=run_key,
            partition_key=partition_key,
            job_name=provider_month_ingest.name,
            asset_selection=[a.key for a in SUMMARY_ASSETS],
            tags=tags,
        )
    return dg.RunRequest(
        run_key=run_key,
        partition_key=partition_key,
        job_name=provider_month_ingest.name,
        run_config=dg.RunConfig(ops={"report_manifest": ManifestConfig(force=force)}),
        tags=tags,
    )
