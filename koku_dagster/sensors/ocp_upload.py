"""``ocp_upload_sensor``: OpenShift payload announcements -> payload runs -> summary runs.

Each tick: read a bounded batch of ``KOKU_UPLOAD_TOPIC`` (group ``hccm-group``), record it, commit
the offsets; re-send validation results still owed; request an ``ocp_payload_ingest`` run per
pending upload and, per successful upload, a summary-only ``provider_month_ingest`` run per changed
month. No download happens here.

Budget: the tick has :data:`TICK_BUDGET_SECONDS` (Dagster's limit is 60 s). Each phase gets what is
left, with a deadline of its own (the Kafka read and commit, the result re-sends, the look at stalled
uploads); what a phase did not reach is in the table still and is taken by the next tick.

Hand-over: the request ids of the runs a tick asks for are kept in the cursor, and marked in the
table (``run_requested``, ``summaries_requested``) by the next tick, because Dagster stores a tick's
cursor only together with its run requests. Until then they are asked for again, which their run
keys make harmless.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import dagster as dg
import sqlalchemy as sa
from confluent_kafka import KafkaException

from koku_dagster.assets.ingest import ingest_run_request, provider_month_ingest
from koku_dagster.assets.ocp_uploads import (
    OCP_LINE_ITEMS_TAG,
    REQUEST_ID_TAG,
    ocp_payload_ingest,
    ocp_payload_uploads,
    payload_run_request,
)
from koku_dagster.assets.partitions import billing_month_partitions, providers_partitions
from koku_dagster.ingest.polling import existing_providers
from koku_dagster.resources import ApplicationDatabase, KafkaResource
from koku_dagster.uploads import upload_records
from koku_dagster.uploads.intake import IntakeLimits, IntakeReport, take_announcements
from koku_dagster.uploads.upload_records import Upload
from koku_dagster.uploads.validation import send_validations

#: Runs asked for per tick, of each kind.
MAX_REQUESTS = 200
#: A finished upload's result is re-sent by the sensor only after the run had this long to send it.
VALIDATION_GRACE = timedelta(seconds=60)
#: An upload still pending this long after it arrived, with every run of it ended, is asked for again.
STALLED_AFTER = timedelta(seconds=60)
#: Seconds a tick may take, and the share of the Kafka read and of the result re-sends in it.
TICK_BUDGET_SECONDS = 40.0
READ_BUDGET_SECONDS = 5.0
RESEND_TIMEOUT_SECONDS = 10.0
#: Runs of one upload that may end without an outcome (killed, cancelled, database away) before it fails.
MAX_PAYLOAD_RUNS = 3
_FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def _parse_cursor(cursor: str | None) -> dict[str, Any]:
    try:
        doc = json.loads(cursor) if cursor else {}
    except ValueError:
        doc = {}
    return doc if isinstance(doc, dict) else {}


def _summary_requests(
    context: dg.SensorEvaluationContext, engine: sa.Engine, due: list[Upload]
) -> tuple[list[dg.RunRequest], list[str]]:
    """Summary runs for successful uploads, and the uploads they cover (to be marked next tick).

    An upload whose provider has no ``providers`` partition yet waits; one whose provider is gone
    is dropped; months outside the ``billing_month`` partitions are left out.
    """
    if not due:
        return [], []
    alive = existing_providers(engine, {u.provider_uuid for u in due if u.provider_uuid})
    assert providers_partitions.name is not None  # defined with a name
    partitioned = set(context.instance.get_dynamic_partitions(providers_partitions.name))
    months = set(billing_month_partitions.get_partition_keys())
    requests: list[dg.RunRequest] = []
    handed: list[str] = []
    for upload in due:
        uuid = upload.provider_uuid
        if uuid and uuid in alive and uuid not in partitioned:
            continue  # the sources sensor adds the partition; ask next tick
        handed.append(upload.request_id)
        if not uuid or uuid not in alive:
            context.log.info(f"upload {upload.request_id}: provider {uuid} is gone; no summary")
            continue
        for month in upload.months:
            if month.isoformat() not in months:
                context.log.warning(f"upload {upload.request_id}: {month:%Y-%m} is not a billing_month partition")
                continue
            key = f"ocp-summary:{upload.request_id}:{month.isoformat()}"
            requests.append(ingest_run_request(uuid, month, run_key=key, summary_only=True, tags=OCP_LINE_ITEMS_TAG))
    return requests, handed


def _stalled_requests(context: dg.SensorEvaluationContext, engine: sa.Engine, deadline: float) -> list[dg.RunRequest]:
    """Runs again for pending uploads whose runs all ended without an outcome (failed, cancelled,
    or failed by run monitoring or ``dead_run_sensor`` because their process died); failure after
    :data:`MAX_PAYLOAD_RUNS` of them (the sensor then sends the result, as for any finished upload)."""
    requests: list[dg.RunRequest] = []
    for request_id in upload_records.handed_over_pending(engine, STALLED_AFTER, limit=20):
        if time.monotonic() > deadline:
            break  # the rest next tick
        runs = context.instance.get_runs(dg.RunsFilter(tags={REQUEST_ID_TAG: request_id[:63]}))
        if any(run.status not in _FINISHED for run in runs):
            continue  # queued or running
        if len(runs) >= MAX_PAYLOAD_RUNS:
            reason = f"gave up: {len(runs)} runs ended without recording an outcome (see their logs)"
            context.log.error(f"upload {request_id}: {reason}")
            upload_records.record_outcome(engine, request_id, state=upload_records.FAILURE, reason=reason)
            continue
        context.log.warning(f"upload {request_id}: its run ended without an outcome; asking again")
        requests.append(payload_run_request(request_id, attempt=len(runs)))
    return requests


def _metadata(intake: IntakeReport, totals: Counter[str], states: dict[str, int], resent: int) -> dict[str, Any]:
    return {
        "messages_read": intake.read,
        "announcements_new": intake.new,
        "announcements_replayed": intake.duplicates,
        "messages_ignored": sum(intake.ignored.values()),
        "messages_rejected": len(intake.rejected),
        "ignored_services": dg.MetadataValue.json(dict(intake.ignored)),
        "committed_offsets": dg.MetadataValue.json({str(p): o for p, o in intake.committed.items()}),
        "totals": dg.MetadataValue.json(dict(totals)),
        "uploads_by_state": dg.MetadataValue.json(states),
        "validations_resent": resent,
        "dagster/row_count": sum(states.values()),
    }


def _left(deadline: float, cap: float) -> float:
    """Seconds a phase may take: ``cap``, or what is left of the tick when that is less."""
    return max(0.0, min(cap, deadline - time.monotonic()))


@dg.sensor(
    name="ocp_upload_sensor",
    minimum_interval_seconds=10,
    jobs=[ocp_payload_ingest, provider_month_ingest],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Consumes OpenShift payload announcements (KOKU_UPLOAD_TOPIC, group hccm-group, header service=hccm), "
        "runs `ocp_payload_ingest` for each, then the summary steps of the months a payload changed."
    ),
)
def ocp_upload_sensor(
    context: dg.SensorEvaluationContext, app_db: ApplicationDatabase, kafka: KafkaResource
) -> dg.SensorResult:
    deadline = time.monotonic() + TICK_BUDGET_SECONDS
    engine = app_db.engine()
    cursor = _parse_cursor(context.cursor)
    upload_records.mark(engine, cursor.get("runs", []), "run_requested")
    upload_records.mark(engine, cursor.get("summaries", []), "summaries_requested")

    kafka_ok = True
    try:
        intake = take_announcements(
            engine,
            kafka.bootstrap_servers,
            kafka.upload_topic,
            limits=IntakeLimits(read_budget_seconds=_left(deadline, READ_BUDGET_SECONDS)),
            security=kafka.security(),
        )
    except KafkaException as exc:
        context.log.warning(f"Kafka unavailable, announcements wait: {exc}")
        intake, kafka_ok = IntakeReport(), False
    for rejection in intake.rejected:
        pos = rejection.position
        context.log.warning(f"rejected {pos.topic}[{pos.partition}]@{pos.offset}: {rejection.reason}")

    resent: set[str] = set()
    if kafka_ok and _left(deadline, RESEND_TIMEOUT_SECONDS) >= 1.0:
        owed = upload_records.validations_due(engine, VALIDATION_GRACE, MAX_REQUESTS)
        resent = send_validations(
            engine,
            kafka.bootstrap_servers,
            kafka.validation_topic,
            owed,
            timeout=_left(deadline, RESEND_TIMEOUT_SECONDS),
            security=kafka.security(),
        )

    runs = upload_records.runs_due(engine, MAX_REQUESTS)
    again = _stalled_requests(context, engine, deadline)
    summaries, handed = _summary_requests(context, engine, upload_records.summaries_due(engine, MAX_REQUESTS))
    totals = Counter({k: int(v) for k, v in (cursor.get("totals") or {}).items()})
    totals.update(
        {
            "read": intake.read,
            "new": intake.new,
            "ignored": sum(intake.ignored.values()),
            "rejected": len(intake.rejected),
        }
    )
    next_cursor = json.dumps({"runs": runs, "summaries": handed, "totals": dict(totals)}, sort_keys=True)
    run_requests = [payload_run_request(rid) for rid in runs] + again + summaries
    if not intake.read and not run_requests and not resent:
        return dg.SensorResult(skip_reason="no new announcements or runs to request", cursor=next_cursor)
    context.log.info(
        f"{intake.read} messages ({intake.new} new uploads, {intake.duplicates} replayed, "
        f"{sum(intake.ignored.values())} ignored, {len(intake.rejected)} rejected); "
        f"{len(runs)} payload runs and {len(summaries)} summary runs requested; {len(resent)} results re-sent"
    )
    events = []
    if intake.read or resent:
        meta = _metadata(intake, totals, upload_records.state_counts(engine), len(resent))
        events.append(dg.AssetMaterialization(ocp_payload_uploads.key, metadata=meta))
    return dg.SensorResult(run_requests=run_requests, cursor=next_cursor, asset_events=events)
