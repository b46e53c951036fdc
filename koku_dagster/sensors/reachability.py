"""``source_reachability_sensor``: providers due for a reachability check -> ``check_source_reachability`` runs."""

from __future__ import annotations

import hashlib

import dagster as dg

from koku_dagster.assets.reachability import (
    MAX_PROVIDERS_PER_RUN,
    check_source_reachability,
    reachability_run_request,
)
from koku_dagster.infra.db.types import utcnow
from koku_dagster.ingest.reachability import due_providers
from koku_dagster.resources import ApplicationDatabase

_IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dg.sensor(
    name="source_reachability_sensor",
    minimum_interval_seconds=30,
    jobs=[check_source_reachability],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Requests a `check_source_reachability` run for the providers due for a check: at once after creation "
        "or a change of credentials or billing source, and daily for every source. One run at a time."
    ),
)
def source_reachability_sensor(context: dg.SensorEvaluationContext, app_db: ApplicationDatabase) -> dg.SensorResult:
    in_flight = context.instance.get_runs_count(
        dg.RunsFilter(job_name=check_source_reachability.name, statuses=_IN_FLIGHT)
    )
    if in_flight:
        return dg.SensorResult(skip_reason="a reachability check run is in progress")
    now = utcnow()
    due = due_providers(app_db.engine(), now, MAX_PROVIDERS_PER_RUN)
    if not due:
        return dg.SensorResult(skip_reason="no source is due for a reachability check")
    # The same due state gives the same key: a run that left it unchanged (crashed) is retried the next hour.
    digest = hashlib.sha256("\n".join(d.key for d in due).encode()).hexdigest()[:20]
    context.log.info(f"{len(due)} source(s) due for a reachability check")
    request = reachability_run_request([d.provider_uuid for d in due], f"reachability:{digest}:{now:%Y%m%dT%H}")
    return dg.SensorResult(run_requests=[request])
