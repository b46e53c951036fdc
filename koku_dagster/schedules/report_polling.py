"""``report_polling_schedule``: Koku's hourly orchestrator, as run requests per provider x month.

The tick only reads: each run records its provider's poll when it starts (``report_manifest``), so a
tick that fails or times out loses no poll, and a provider whose poll is still queued or running is
not asked for again.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import dagster as dg

from koku_dagster.assets.ingest import POLL_TAG, POLLED_AT_TAG, ingest_run_request, provider_month_ingest
from koku_dagster.ingest.polling import months_to_ingest, take_polling_batch
from koku_dagster.resources import ApplicationDatabase
from koku_dagster.resources.ingestion import IngestionResource

#: Seconds the tick may spend building requests (Dagster's limit is 60 s); the providers left over
#: stay due and are taken by the next tick.
TICK_BUDGET_SECONDS = 30.0
_NOT_DONE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def polls_in_flight(instance: dg.DagsterInstance) -> set[str]:
    """Providers with a scheduled poll's run queued or running."""
    runs = instance.get_runs(dg.RunsFilter(statuses=_NOT_DONE, tags={POLL_TAG: "scheduled"}))
    return {run.tags["koku/provider"] for run in runs if "koku/provider" in run.tags}


@dg.schedule(
    name="report_polling_schedule",
    cron_schedule="0 * * * *",
    target=provider_month_ingest,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Hourly: picks the providers due for polling (active, not paused, reachable, not OpenShift, not polled "
        "within KOKU_POLLING_INTERVAL_SECONDS, a share of them per hour, skipping those still processing or with "
        "a poll queued) and requests one run per provider and billing month; each run records the poll as it starts."
    ),
)
def report_polling_schedule(
    context: dg.ScheduleEvaluationContext, app_db: ApplicationDatabase, ingestion: IngestionResource
) -> list[dg.RunRequest] | dg.SkipReason:
    deadline = time.monotonic() + TICK_BUDGET_SECONDS
    now = context.scheduled_execution_time.astimezone(UTC)
    busy = polls_in_flight(context.instance)
    due = take_polling_batch(app_db.engine(), now, ingestion.polling_interval_seconds, skip=busy)
    requests: list[dg.RunRequest] = []
    for taken, p in enumerate(due):
        if time.monotonic() > deadline:
            context.log.warning(f"tick budget spent: {len(due) - taken} provider(s) left for the next tick")
            break
        requests += _poll_requests(p.uuid, p.setup_complete, now, ingestion)
    if not requests:
        return dg.SkipReason("no provider is due for polling")
    context.log.info(f"polling {len(due)} provider(s): {len(requests)} provider-month run(s)")
    return requests


def _poll_requests(uuid: str, setup_complete: bool, now: datetime, ingestion: IngestionResource) -> list[dg.RunRequest]:
    tags = {POLL_TAG: "scheduled", POLLED_AT_TAG: now.isoformat()}
    months = months_to_ingest(
        setup_complete, now.date(), ingestion.initial_ingest_num_months, ingestion.retain_num_months
    )
    return [ingest_run_request(uuid, m, f"poll:{uuid}:{m:%Y-%m}:{now:%Y%m%dT%H}", tags=tags) for m in months]
