"""Job ``leftovers_sweep`` and its daily schedule: remove what crashed runs left behind.

The work is :func:`koku_dagster.ingest.sweep.sweep_leftovers`; this layer tells it which runs are
in progress (their earliest start and providers, from the Dagster instance) and which providers
still exist (application database). It also runs when ``make demo`` starts.
"""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from koku_dagster.assets.ingest import INGEST_MAX_RUNTIME_SECONDS
from koku_dagster.assets.ocp_uploads import PAYLOAD_MAX_RUNTIME_SECONDS
from koku_dagster.ingest.polling import existing_providers
from koku_dagster.ingest.sweep import RunsInProgress, sweep_leftovers
from koku_dagster.resources import ApplicationDatabase, ObjectStoreResource
from koku_dagster.resources.ingestion import IngestionResource

#: Older than any run may live (the longest ``dagster/max_runtime``) plus an hour for run monitoring
#: to notice: no run still going can own such a leftover.
LEFTOVER_AGE = timedelta(seconds=max(INGEST_MAX_RUNTIME_SECONDS, PAYLOAD_MAX_RUNTIME_SECONDS)) + timedelta(hours=1)
_IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def runs_in_progress(instance: dg.DagsterInstance, exclude: str | None = None) -> RunsInProgress:
    """The earliest start and the providers of the runs in progress (``exclude``: this run)."""
    records = [
        r for r in instance.get_run_records(dg.RunsFilter(statuses=_IN_PROGRESS)) if r.dagster_run.run_id != exclude
    ]
    starts = [datetime.fromtimestamp(r.start_time or r.create_timestamp.timestamp(), UTC) for r in records]
    providers = {r.dagster_run.tags["koku/provider"] for r in records if "koku/provider" in r.dagster_run.tags}
    return RunsInProgress(min(starts) if starts else None, frozenset(providers))


@dg.op(
    name="sweep_leftovers",
    description=(
        "Remove `.staging-*`, `.retired-*`, `.ocp-incoming-*`, `ocp-payload-*` and `.warehouse-*` leftovers "
        "older than any run may live, and those of deleted providers, never one a run in progress may own."
    ),
)
def sweep_leftovers_op(
    context: dg.OpExecutionContext,
    app_db: ApplicationDatabase,
    object_store: ObjectStoreResource,
    ingestion: IngestionResource,
) -> None:
    engine = app_db.engine()
    places = [object_store.object_store().local_root, ingestion.work_dir(), Path(ingestion.home)]
    report = sweep_leftovers(
        places,
        now=datetime.now(UTC),
        max_age=LEFTOVER_AGE,
        in_progress=runs_in_progress(context.instance, exclude=context.run_id),
        existing_providers=lambda uuids: existing_providers(engine, uuids),
    )
    for path in report.removed:
        context.log.info(f"removed {path}")
    context.log.info(
        f"leftovers: {len(report.removed)} removed ({report.bytes_freed} bytes), {report.kept_young} young and "
        f"{report.kept_busy} owned by runs in progress kept, {report.failed} failed"
    )
    if report.failed:
        raise dg.Failure(description=f"{report.failed} leftover(s) could not be removed (see the log)")


@dg.job(
    name="leftovers_sweep",
    executor_def=dg.in_process_executor,
    description="Remove the scratch folders crashed runs left behind (see the op).",
    tags={"dagster/max_runtime": "3600"},
)
def leftovers_sweep() -> None:
    sweep_leftovers_op()


leftovers_sweep_schedule = dg.ScheduleDefinition(
    name="leftovers_sweep_schedule",
    cron_schedule="17 3 * * *",
    job=leftovers_sweep,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily: run `leftovers_sweep`.",
)
