"""Provider x billing-month assets: manifest -> report files -> line items -> daily -> summary.

Each asset reads its partition, calls one step of :mod:`koku_dagster.ingest.workflow` and maps the
result to a ``MaterializeResult``. A manifest that was fully processed before is not processed again:
``report_manifest`` then materializes nothing and the rest of the run is skipped, unless the run is
forced (``ManifestConfig.force``, used after a billing change).
"""

import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import date, datetime
from pathlib import Path
from typing import Any

import dagster as dg

from koku_dagster.assets import OWNERS
from koku_dagster.assets.partitions import provider_month_partitions
from koku_dagster.ingest import workflow
from koku_dagster.ingest.ocp_lock import ocp_line_items_lock, pushes_line_items
from koku_dagster.ingest.polling import record_poll
from koku_dagster.ingest.recording import StepFailed, WorkflowError
from koku_dagster.resources import ApplicationDatabase, CloudApisResource, ObjectStoreResource
from koku_dagster.resources.ingestion import IngestionResource

GROUP = "ingest"
#: Bump when a step's logic changes what it writes.
CODE_VERSION = "1"
#: ``dagster/max_runtime`` of a provider-month run; run monitoring fails a run still going after it.
#: The benchmarked AWS month (504k rows) takes ~6 s and 5M rows ~50 s (docs/benchmarks.md), so a
#: 100M-row month needs ~20 minutes: 3 hours is ten times that.
INGEST_MAX_RUNTIME_SECONDS = 3 * 3600
#: How long an OpenShift summary step waits for the payload run holding the line items (at most a
#: payload run's own maximum runtime, ``ocp_uploads.PAYLOAD_MAX_RUNTIME_SECONDS``).
OCP_LOCK_WAIT_SECONDS = 3600
#: Tags of the runs ``report_polling_schedule`` requests: the poll is recorded when such a run starts.
POLL_TAG = "koku/poll"
POLLED_AT_TAG = "koku/polled_at"


class ManifestConfig(dg.Config):
    force: bool = False


def _partition(context: dg.AssetExecutionContext) -> tuple[str, date]:
    key = context.partition_key  # a plain string when a run was launched with only the dagster/partition tag
    if not isinstance(key, dg.MultiPartitionKey):
        key = provider_month_partitions.get_partition_key_from_str(key)
    keys = key.keys_by_dimension
    return keys["provider"], date.fromisoformat(keys["billing_month"])


def _workplace(
    app_db: ApplicationDatabase,
    object_store: ObjectStoreResource,
    ingestion: IngestionResource,
    cloud_apis: CloudApisResource,
) -> workflow.Workplace:
    return workflow.Workplace(
        engine=app_db.engine(),
        object_store=object_store.object_store(),
        access=object_store.report_access(cloud_apis.endpoints()),
        work_dir=ingestion.work_dir(),
        warehouse=ingestion.warehouse_path(),
        retain_num_months=ingestion.retain_num_months,
    )


def _record_poll(context: dg.AssetExecutionContext, app_db: ApplicationDatabase, uuid: str) -> None:
    """A scheduled poll's run records the poll now that it runs (once: its other months find it done)."""
    polled_at = context.run.tags.get(POLLED_AT_TAG)
    if polled_at and record_poll(app_db.engine(), uuid, datetime.fromisoformat(polled_at)):
        context.log.info(f"poll of {polled_at} recorded for provider {uuid}")


def _ocp_reading(app_db: ApplicationDatabase, ingestion: IngestionResource, uuid: str) -> AbstractContextManager[None]:
    """Shared hold on the OpenShift line items for an OpenShift provider's summary steps (waits for a
    payload run writing them); nothing for other types."""
    engine = app_db.engine()
    if not pushes_line_items(engine, uuid):
        return nullcontext()
    return ocp_line_items_lock(Path(ingestion.home), exclusive=False, timeout=OCP_LOCK_WAIT_SECONDS, engine=engine)


@contextmanager
def _step(context: dg.AssetExecutionContext) -> Iterator[None]:
    """A workflow error fails the partition with its message (logged when the step recorded it)."""
    try:
        yield
    except WorkflowError as exc:
        if isinstance(exc, StepFailed):
            context.log.error(str(exc))
        raise dg.Failure(description=str(exc)) from None


def _path_metadata(meta: Mapping[str, Any], key: str = "partition") -> dict[str, Any]:
    return {**{k: v for k, v in meta.items() if k != key}, "path": dg.MetadataValue.path(str(meta[key]))}


@dg.asset(
    partitions_def=provider_month_partitions,
    group_name=GROUP,
    owners=OWNERS,
    code_version=CODE_VERSION,
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
    cloud_apis: CloudApisResource,
):
    uuid, month = _partition(context)
    _record_poll(context, app_db, uuid)
    with _step(context):
        found = workflow.find_manifest(
            _workplace(app_db, object_store, ingestion, cloud_apis), uuid, month, force=config.force
        )
    for note in found.notes:
        context.log.info(note)
    if found.manifest_id is not None:
        yield dg.MaterializeResult(metadata=found.metadata())


@dg.asset(
    partitions_def=provider_month_partitions,
    group_name=GROUP,
    owners=OWNERS,
    code_version=CODE_VERSION,
    deps=[report_manifest],
    kinds={"csv"},
    description="The month's report files, fetched with etag checks and archived under `data/csv/...`.",
)
def report_files(
    context: dg.AssetExecutionContext,
    app_db: ApplicationDatabase,
    object_store: ObjectStoreResource,
    ingestion: IngestionResource,
    cloud_apis: CloudApisResource,
) -> dg.MaterializeResult:
    uuid, month = _partition(context)
    with _step(context):
        fetched = workflow.fetch_files(_workplace(app_db, object_store, ingestion, cloud_apis), uuid, month)
    return dg.MaterializeResult(
        metadata={
            "assembly_id": fetched.assembly_id,
            "files": fetched.files,
            "fetched": fetched.fetched,
            "unchanged": fetched.unchanged,
            "bytes": fetched.bytes,
            "path": dg.MetadataValue.path(str(fetched.archive)),
        }
    )


@dg.asset(
    partitions_def=provider_month_partitions,
    group_name=GROUP,
    owners=OWNERS,
    code_version=CODE_VERSION,
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
    cloud_apis: CloudApisResource,
) -> dg.MaterializeResult:
    uuid, month = _partition(context)
    with _step(context):
        result = workflow.convert_line_items(_workplace(app_db, object_store, ingestion, cloud_apis), uuid, month)
    return dg.MaterializeResult(metadata={**_path_metadata(result.metadata()), "dagster/row_count": result.stats.rows})


@dg.asset(
    partitions_def=provider_month_partitions,
    group_name=GROUP,
    owners=OWNERS,
    code_version=CODE_VERSION,
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
    cloud_apis: CloudApisResource,
) -> dg.MaterializeResult:
    uuid, month = _partition(context)
    with _step(context), _ocp_reading(app_db, ingestion, uuid):
        built = workflow.build_daily(_workplace(app_db, object_store, ingestion, cloud_apis), uuid, month)
    daily = built.outcome
    if daily is None:
        context.log.info(f"{built.provider_type}: the summary reads the line items directly; no daily line items")
        return dg.MaterializeResult(metadata={"dagster/row_count": 0, "applies": False})
    by_table = daily.rows_by_table
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(os.path.commonpath(daily.partitions)),
            "files": daily.files,
            "bytes": daily.bytes,
            "dagster/row_count": daily.rows,
            **{f"rows_{name}": rows for name, rows in by_table.items() if len(by_table) > 1},
        }
    )


SUMMARY_CHECKS = [
    dg.AssetCheckSpec(
        "summary_totals_match_raw",
        asset="daily_summary",
        description="Summary (and daily) cost, credits or OpenShift usage hours equal the raw report's, "
        "to the cent (hours: within 1e-6).",
    ),
    dg.AssetCheckSpec(
        "no_rows_outside_month",
        asset="daily_summary",
        description="No summary row falls outside the billing (GCP: invoice) month.",
    ),
    dg.AssetCheckSpec(
        "row_counts_consistent",
        asset="daily_summary",
        description="Every source row became a line item or was left out for a stated reason; daily "
        "and summary rows exist when line items do.",
    ),
]


@dg.asset(
    partitions_def=provider_month_partitions,
    group_name=GROUP,
    owners=OWNERS,
    code_version=CODE_VERSION,
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
    cloud_apis: CloudApisResource,
):
    uuid, month = _partition(context)
    with _step(context), _ocp_reading(app_db, ingestion, uuid):
        built = workflow.build_summary(_workplace(app_db, object_store, ingestion, cloud_apis), uuid, month)
    if message := built.purge.message():
        context.log.info(message)
    checks = built.checks
    yield dg.MaterializeResult(
        metadata={
            "table": built.table,
            "path": dg.MetadataValue.path(str(built.result.partition)),
            "dagster/row_count": built.result.rows,
            "bytes": built.result.bytes,
            **checks.totals,
            "assembly_id": built.assembly_id,
        }
    )
    yield dg.AssetCheckResult(
        check_name="summary_totals_match_raw", passed=checks.totals_match, metadata=checks.details
    )
    yield dg.AssetCheckResult(
        check_name="no_rows_outside_month",
        passed=checks.summary_rows_outside_month == 0,
        metadata={
            "summary_rows_outside_month": checks.summary_rows_outside_month,
            "report_rows_left_out_as_outside_month": checks.report_rows_outside_month,
        },
    )
    yield dg.AssetCheckResult(
        check_name="row_counts_consistent", passed=checks.counts_consistent, metadata=checks.details
    )


FOCUS_CHECKS = [
    dg.AssetCheckSpec(
        "focus_billed_totals",
        asset="focus_cost",
        description="sum(BilledCost) per currency equals the report's billed total to the cent.",
    ),
    dg.AssetCheckSpec(
        "focus_mandatory_columns",
        asset="focus_cost",
        description="Every column FOCUS 1.2 marks mandatory is present, typed, and non-null where required.",
    ),
    dg.AssetCheckSpec(
        "focus_allowed_values",
        asset="focus_cost",
        description="Allowed values and column rules of FOCUS 1.2 hold (charge categories, classes, ...).",
    ),
]


@dg.asset(
    partitions_def=provider_month_partitions,
    group_name=GROUP,
    owners=OWNERS,
    code_version=CODE_VERSION,
    deps=[line_items],
    kinds={"parquet", "duckdb"},
    check_specs=FOCUS_CHECKS,
    description=(
        "The month's line items as FOCUS 1.2 cost rows (the FinOps Foundation's common schema) under "
        "`data/focus/...`, for AWS, Azure and GCP (and their -local types); queried across clouds through the "
        "`focus_costs` view. OpenShift has no costs yet (see docs/focus.md)."
    ),
)
def focus_cost(
    context: dg.AssetExecutionContext,
    app_db: ApplicationDatabase,
    object_store: ObjectStoreResource,
    ingestion: IngestionResource,
    cloud_apis: CloudApisResource,
):
    uuid, month = _partition(context)
    with _step(context):
        built = workflow.build_focus_month(_workplace(app_db, object_store, ingestion, cloud_apis), uuid, month)
    if built.result is None:
        context.log.info(f"{built.provider_type} has no costs to write as FOCUS rows")
        yield dg.MaterializeResult(metadata={"dagster/row_count": 0, "applies": False})
        for spec in FOCUS_CHECKS:
            yield dg.AssetCheckResult(check_name=spec.name, passed=True, metadata={"applies": False})
        return
    yield dg.MaterializeResult(
        metadata={**_path_metadata(built.result.metadata()), "dagster/row_count": built.result.rows}
    )
    for check in built.checks:
        yield dg.AssetCheckResult(
            check_name=f"focus_{check.name}",
            passed=check.passed,
            description=check.description,
            metadata=check.metadata(),
        )


INGEST_ASSETS = [report_manifest, report_files, line_items, focus_cost, daily_line_items, daily_summary]

provider_month_ingest = dg.define_asset_job(
    "provider_month_ingest",
    selection=dg.AssetSelection.assets(*INGEST_ASSETS),
    description="Ingest one provider's billing month, from manifest to summary.",
    executor_def=dg.in_process_executor,  # the steps run one after another; no process per step
    tags={"dagster/max_runtime": str(INGEST_MAX_RUNTIME_SECONDS)},
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
