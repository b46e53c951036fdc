"""Provider x billing-month assets: manifest -> report files -> line items -> daily -> summary.

Each asset is one step of :mod:`koku_dagster.ingest`; this module only wires partitions,
records (manifest and file statuses) and metadata. A manifest that was fully processed before
is not processed again: ``report_manifest`` then materializes nothing and the rest of the run
is skipped, unless the run is forced (``ManifestConfig.force``, used after a billing change).
"""


import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import dagster as dg

from koku_dagster.assets.partitions import provider_month_partitions
from koku_dagster.ingest import manifests as records
from koku_dagster.ingest.aws_source import Manifest, ReportFile, ReportSource
from koku_dagster.ingest.errors import ManifestError
from koku_dagster.ingest.paths import csv_dir
from koku_dagster.ingest.provider_types import STEPS, MonthPartition, ProviderSteps
from koku_dagster.infra.db.types import utcnow
from koku_dagster.orchestration.polling import billing_months
from koku_dagster.orchestration.provider_context import (
    ProviderContext,
    discard_if_deleted,
    load_provider,
    report_availability,
)
from koku_dagster.orchestration.report_sources import ArchivedReports, archive_file, report_source_for
from koku_dagster.resources import ApplicationDatabase, ObjectStoreResource
from koku_dagster.resources.ingestion import IngestionResource
from koku_dagster.ingest.warehouse import refresh_views

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


def _month(ctx: ProviderContext, month: date, object_store: ObjectStoreResource,
           ingestion: IngestionResource) -> tuple[MonthPartition, ProviderSteps]:
    """The provider month as the per-type steps see it, and those steps."""
    part = MonthPartition(
        schema=ctx.schema,
        provider_type=ctx.storage_type,
        provider_uuid=ctx.uuid,
        month=month,
        out_root=object_store.store().local_root,
        work_dir=ingestion.work_dir(),
        cluster_id=str(ctx.credentials.get("cluster_id") or ""),
    )
    return part, STEPS[ctx.storage_type]


def _source(ctx: ProviderContext, object_store: ObjectStoreResource) -> ReportSource:
    return report_source_for(ctx, object_store.roots(), object_store.report_s3_client)


def _current_manifest(source: ReportSource, month: date, recorded: records.ManifestRecord) -> Manifest:
    """The manifest being processed, as the source shows it now (the same assembly as recorded)."""
    manifest = source.find_manifest(month)
    if manifest is None or manifest.assembly_id != recorded.assembly_id:
        raise ManifestError("the month's manifest changed during the run; the next poll picks it up")
    return manifest


def _fail(context: dg.AssetExecutionContext, app_db: ApplicationDatabase, manifest_id: int | None,
          step: records.Step, error: Exception, provider_uuid: str, *, unavailable: bool = False) -> dg.Failure:
    message = f"{type(error).__name__}: {error}"[:2000]
    context.log.error(message)
    engine = app_db.engine()
    if manifest_id is not None:
        records.set_step(engine, manifest_id, step, "failed", message)
    if unavailable:
        report_availability(engine, provider_uuid, str(error))
    return dg.Failure(description=message)


@contextmanager
def _recorded_step(
    context: dg.AssetExecutionContext, app_db: ApplicationDatabase, manifest_id: int, step: records.Step,
    uuid: str, *, files: bool = False,
) -> Iterator[None]:
    """Any error of a step's work fails the partition with its message, recorded in the manifest
    state (and, with ``files``, as every file's status): nothing is left looking in progress."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - recorded and re-raised as the step's Failure
        if files:
            engine = app_db.engine()
            for name in records.file_statuses(engine, manifest_id):
                records.set_file_status(engine, manifest_id, name, records.FileStatus.FAILED)
        raise _fail(context, app_db, manifest_id, step, exc, uuid) from None


def _ensure_live(app_db: ApplicationDatabase, object_store: ObjectStoreResource, uuid: str) -> None:
    """After a step wrote files: fail (and remove them again) if the provider was deleted meanwhile."""
    if discard_if_deleted(app_db.engine(), object_store.store(), uuid):
        raise dg.Failure(description=f"provider {uuid} was deleted during the run; what the run wrote was removed")


def _purge_expired(
    context: dg.AssetExecutionContext,
    app_db: ApplicationDatabase,
    object_store: ObjectStoreResource,
    ingestion: IngestionResource,
    uuid: str,
) -> date:
    """Drop the provider's months older than ``KOKU_RETAIN_NUM_MONTHS`` (files and manifests); return
    the first month kept.

    Done when a polled provider's manifest is looked for (even when nothing new came) and after each
    summary (OpenShift months are summarised, never polled).
    """
    cutoff = billing_months(utcnow().date(), ingestion.retain_num_months)[-1]
    files = object_store.store().delete_months_before(uuid, cutoff)
    manifests = records.purge_manifests_before(app_db.engine(), uuid, cutoff)
    if files or manifests:
        context.log.info(f"retention: removed {files} month folder(s) and {manifests} manifest(s) before {cutoff}")
    return cutoff


def _latest_manifest(app_db: ApplicationDatabase, uuid: str, month: date) -> records.ManifestRecord:
    found = records.latest_manifest(app_db.engine(), uuid, month)
    if found is None:
        raise dg.Failure(description="no manifest recorded for this provider month; materialize report_manifest")
    return found


@dg.asset(
    partitions_def=provider_month_partitions,
    group_name=GROUP,
    kinds={"json"},
    output_required=False,
    description=(
        "The cost report manifest of a provider's billing month (AWS CUR manifest, Azure export folder or "
        "manifest, GCP export files of the invoice month), recorded in `reporting_common_costusagereportmanifest` "
        "with one status row per report file. Nothing is materialized when the same assembly was fully "
        "processed before (unless forced), when the month has no report yet, or for OpenShift (payloads are "
        "pushed: see `ocp_upload_sensor`)."
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
    if STEPS[ctx.storage_type].convert is None:
        context.log.info(f"{ctx.type} data arrives as uploaded payloads; there is no report to look for")
        return
    engine = app_db.engine()
    try:
        manifest = _source(ctx, object_store).find_manifest(month)
    except ManifestError as exc:  # the report itself is wrong; the source is still reachable
        raise _fail(context, app_db, None, "download", exc, uuid) from None
    except Exception as exc:  # noqa: BLE001 - bad paths, missing buckets, refused credentials
        raise _fail(context, app_db, None, "download", exc, uuid, unavailable=True) from None
    report_availability(engine, uuid, None)
    cutoff = _purge_expired(context, app_db, object_store, ingestion, uuid)  # also when nothing new comes
    if month < cutoff:
        context.log.info(f"{month:%Y-%m} is older than the {ingestion.retain_num_months} months kept; not ingested")
        return
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
    with _recorded_step(context, app_db, recorded.id, "download", uuid, files=True):
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
        store.publish(archive)
    _ensure_live(app_db, object_store, uuid)
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
        "Line items as typed Parquet (Koku's column normalisation, tags or labels folded into one JSON column), "
        "one file per report file, under `data/parquet/...`; the month is replaced whole. OpenShift line items "
        "are written by `ocp_payload_ingest` runs, one per uploaded payload."
    ),
)
def line_items(
    context: dg.AssetExecutionContext,
    app_db: ApplicationDatabase,
    object_store: ObjectStoreResource,
    ingestion: IngestionResource,
) -> dg.MaterializeResult:
    uuid, month = _partition(context)
    ctx = _provider(app_db, uuid)
    part, steps = _month(ctx, month, object_store, ingestion)
    if steps.convert is None:
        raise dg.Failure(description=f"{ctx.type} line items arrive as uploaded payloads, not from report files")
    engine = app_db.engine()
    recorded = _latest_manifest(app_db, uuid, month)
    store = object_store.store()
    archive = csv_dir(part.out_root, ctx.schema, ctx.storage_type, uuid, month)
    records.set_step(engine, recorded.id, "processing", "start")
    with _recorded_step(context, app_db, recorded.id, "processing", uuid, files=True):
        manifest = _current_manifest(_source(ctx, object_store), month, recorded)
        store.fetch(archive)
        for file in manifest.files:
            records.set_file_status(engine, recorded.id, file.name, records.FileStatus.PROCESSING)
        result = steps.convert(ArchivedReports(archive, manifest), manifest, part)
        store.publish(result.partition)
    _ensure_live(app_db, object_store, uuid)
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


def _fetch_all(object_store: ObjectStoreResource, dirs: list[Path]) -> None:
    store = object_store.store()
    for directory in dirs:
        store.fetch(directory)


@dg.asset(
    partitions_def=provider_month_partitions,
    group_name=GROUP,
    deps=[line_items],
    kinds={"parquet", "duckdb"},
    description=(
        "Daily line items: the month's line items aggregated per day and resource by DuckDB (OpenShift: one "
        "partition per report type). Azure summaries read the line items directly, so Azure has none."
    ),
)
def daily_line_items(
    context: dg.AssetExecutionContext,
    app_db: ApplicationDatabase,
    object_store: ObjectStoreResource,
    ingestion: IngestionResource,
) -> dg.MaterializeResult:
    uuid, month = _partition(context)
    ctx = _provider(app_db, uuid)
    part, steps = _month(ctx, month, object_store, ingestion)
    if steps.build_daily is None:
        context.log.info(f"{ctx.type}: the summary reads the line items directly; no daily line items")
        return dg.MaterializeResult(metadata={"dagster/row_count": 0, "applies": False})
    recorded = _latest_manifest(app_db, uuid, month)
    with _recorded_step(context, app_db, recorded.id, "summary", uuid):
        _fetch_all(object_store, steps.line_item_dirs(part))
        result = steps.build_daily(part)
        for partition in result.partitions:
            object_store.store().publish(partition)
    _ensure_live(app_db, object_store, uuid)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(os.path.commonpath(result.partitions)),
            "files": result.files,
            "bytes": result.bytes,
            "dagster/row_count": result.rows,
            **{f"rows_{name}": rows for name, rows in result.rows_by_table.items() if len(result.rows_by_table) > 1},
        }
    )


SUMMARY_CHECKS = [
    dg.AssetCheckSpec("summary_totals_match_raw", asset="daily_summary",
                      description="Summary (and daily) cost, credits or OpenShift usage hours equal the raw report's, "
                                  "to the cent (hours: within 1e-6)."),
    dg.AssetCheckSpec("no_rows_outside_month", asset="daily_summary",
                      description="No summary row falls outside the billing (GCP: invoice) month."),
    dg.AssetCheckSpec("row_counts_consistent", asset="daily_summary",
                      description="Every source row became a line item or was left out for a stated reason; daily "
                                  "and summary rows exist when line items do."),
]


@dg.asset(
    partitions_def=provider_month_partitions,
    group_name=GROUP,
    deps=[daily_line_items],
    kinds={"parquet", "duckdb"},
    pool="duckdb_warehouse",
    check_specs=SUMMARY_CHECKS,
    description=(
        "The provider month of its type's summary table (`reporting_awscostentrylineitem_daily_summary`, "
        "`reporting_azurecostentrylineitem_daily_summary`, `reporting_gcpcostentrylineitem_daily_summary`, "
        "`reporting_ocpusagelineitem_daily_summary`), computed by DuckDB under `data/summary/{table}/...`; also "
        "refreshes the views in `$KOKU_HOME/warehouse.duckdb`."
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
    part, steps = _month(ctx, month, object_store, ingestion)
    engine = app_db.engine()
    recorded = _latest_manifest(app_db, uuid, month)
    records.set_step(engine, recorded.id, "summary", "start")
    with _recorded_step(context, app_db, recorded.id, "summary", uuid):
        _fetch_all(object_store, steps.line_item_dirs(part) + steps.daily_dirs(part))  # footers hold raw totals
        result = steps.build_summary(part)
        object_store.store().publish(result.partition)
        checks = steps.checks(part)
    _ensure_live(app_db, object_store, uuid)
    records.set_step(engine, recorded.id, "summary", "end")
    records.mark_manifest_complete(engine, recorded.id, uuid)
    _purge_expired(context, app_db, object_store, ingestion, uuid)
    refresh_views(ingestion.warehouse_path(), part.out_root)
    yield dg.MaterializeResult(
        metadata={
            "table": steps.summary_table,
            "path": dg.MetadataValue.path(str(result.partition)),
            "dagster/row_count": result.rows,
            "bytes": result.bytes,
            **checks.totals,
            "assembly_id": recorded.assembly_id,
        }
    )
    yield dg.AssetCheckResult(check_name="summary_totals_match_raw", passed=checks.totals_match, metadata=checks.details)
    yield dg.AssetCheckResult(
        check_name="no_rows_outside_month",
        passed=checks.summary_rows_outside_month == 0,
        metadata={
            "summary_rows_outside_month": checks.summary_rows_outside_month,
            "report_rows_left_out_as_outside_month": checks.report_rows_outside_month,
        },
    )
    yield dg.AssetCheckResult(check_name="row_counts_consistent", passed=checks.counts_consistent, metadata=checks.details)


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
    provider_uuid: str,
    month: date,
    run_key: str,
    *,
    force: bool = False,
    summary_only: bool = False,
    tags: Mapping[str, str] | None = None,
) -> dg.RunRequest:
    """A run of :data:`provider_month_ingest` for one provider month (only its summary steps if ``summary_only``)."""
    partition_key = dg.MultiPartitionKey({"provider": provider_uuid, "billing_month": month.isoformat()})
    tags = {"koku/provider": provider_uuid, **(tags or {})}
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
