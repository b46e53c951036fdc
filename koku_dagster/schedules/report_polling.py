"""``report_polling_schedule``: Koku's hourly orchestrator, as run requests per provider x month."""

from __future__ import annotations

from datetime import UTC

import dagster as dg

from koku_dagster.assets.ingest import ingest_run_request, provider_month_ingest
from koku_dagster.ingest.polling import months_to_ingest, take_polling_batch
from koku_dagster.resources import ApplicationDatabase
from koku_dagster.resources.ingestion import IngestionResource


@dg.schedule(
    name="report_polling_schedule",
    cron_schedule="0 * * * *",
    target=provider_month_ingest,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Hourly: picks the providers due for polling (active, not paused, not OpenShift, not polled within "
        "KOKU_POLLING_INTERVAL_SECONDS, a share of them per hour, skipping those still processing) and "
        "requests one run per provider and billing month."
    ),
)
def report_polling_schedule(
    context: dg.ScheduleEvaluationContext, app_db: ApplicationDatabase, ingestion: IngestionResource
) -> list[dg.RunRequest] | dg.SkipReason:
    now = context.scheduled_execution_time.astimezone(UTC)
    due = take_polling_batch(app_db.engine(), now, ingestion.polling_interval_seconds)
    requests = [
        ingest_run_request(p.uuid, month, f"poll:{p.uuid}:{month:%Y-%m}:{now:%Y%m%dT%H}")
        for p in due
        for month in months_to_ingest(p.setup_complete, now.date(), ingestion.initial_ingest_num_months)
    ]
    if not requests:
        return dg.SkipReason("no provider is due for polling")
    context.log.info(f"polling {len(due)} provider(s): {len(requests)} provider-month run(s)")
    return requests
