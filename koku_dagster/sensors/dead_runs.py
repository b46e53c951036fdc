"""``dead_run_sensor``: a run whose process died is failed at once, so the queues behind it move.

The default run launcher cannot tell run monitoring that a run's process is gone: a run killed by
the OOM killer or ``kill -9`` would stay STARTED until its ``dagster/max_runtime``, holding its
provider's and the OpenShift concurrency slots. With that launcher (run processes on this host),
this sensor reports failed each STARTED run whose process, the one that wrote its ``RUN_START``
event, no longer runs (or whose pid now belongs to a newer process). A ``provider_month_ingest``
run failed this way is requested once more with the same partition, steps, config and tags; payload
runs are asked for again by ``ocp_upload_sensor`` (a bounded number of times).
"""

from __future__ import annotations

import time

import dagster as dg
import psutil

from koku_dagster.assets.ingest import provider_month_ingest

#: A run this young may not have written its ``RUN_START`` event yet.
GRACE_SECONDS = 20.0
REVIVES_TAG = "koku/revives"


def _process_gone(pid: int, started: float) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() == psutil.STATUS_ZOMBIE or proc.create_time() > started + 1.0
    except psutil.NoSuchProcess:
        return True


def dead_runs(instance: dg.DagsterInstance, now: float | None = None) -> list[dg.DagsterRun]:
    """STARTED runs whose process is gone (runs on this host only: the default run launcher)."""
    if not isinstance(instance.run_launcher, dg.DefaultRunLauncher):
        return []
    now = now or time.time()
    dead: list[dg.DagsterRun] = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        started = record.start_time
        if started is None or now - started < GRACE_SECONDS:
            continue
        events = instance.get_records_for_run(
            record.dagster_run.run_id, of_type=dg.DagsterEventType.RUN_START, limit=1
        ).records
        event = events[0].event_log_entry.dagster_event if events else None
        if event is not None and event.pid is not None and _process_gone(event.pid, started):
            dead.append(record.dagster_run)
    return dead


def revive_request(run: dg.DagsterRun) -> dg.RunRequest | None:
    """The same provider-month run again, once (None for other jobs and for a run already revived)."""
    if run.job_name != provider_month_ingest.name or REVIVES_TAG in run.tags:
        return None
    return dg.RunRequest(
        run_key=f"revive:{run.run_id}",
        job_name=run.job_name,
        partition_key=run.tags.get("dagster/partition"),
        run_config=run.run_config,
        asset_selection=list(run.asset_selection) if run.asset_selection else None,
        tags={**{k: v for k, v in run.tags.items() if k.startswith("koku/")}, REVIVES_TAG: run.run_id},
    )


@dg.sensor(
    name="dead_run_sensor",
    minimum_interval_seconds=30,
    jobs=[provider_month_ingest],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Fails runs whose process died (OOM killer, kill -9) instead of leaving them STARTED until their "
        "maximum runtime, and asks once more for a provider-month run failed this way."
    ),
)
def dead_run_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    requests: list[dg.RunRequest] = []
    for run in dead_runs(context.instance):
        context.log.warning(f"run {run.run_id} ({run.job_name}): its process is gone; marking it failed")
        context.instance.report_run_failed(run, message="The run's process died (killed or out of memory).")
        if (again := revive_request(run)) is not None:
            requests.append(again)
    if not requests:
        return dg.SensorResult(skip_reason="no run needs reviving")
    return dg.SensorResult(run_requests=requests)
