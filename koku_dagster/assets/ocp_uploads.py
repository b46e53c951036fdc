"""Job ``ocp_payload_ingest``: one announced OpenShift payload -> line items of the months it changes.

One op, not an asset: what a payload materializes is the partitioned ``line_items`` asset, for
partitions (provider x month) known only once the tarball's manifest was read, so the op reports
``AssetMaterialization`` events for them. An unpartitioned "payload" asset would add a node whose
latest materialization means nothing. The summaries then run as ``provider_month_ingest`` runs
requested by ``ocp_upload_sensor``.
"""

from pathlib import Path

import dagster as dg

from koku_dagster.assets import OWNERS
from koku_dagster.assets.ingest import line_items
from koku_dagster.ingest.ocp_lock import ocp_line_items_lock
from koku_dagster.resources import ApplicationDatabase, KafkaResource, ObjectStoreResource
from koku_dagster.resources.ingestion import IngestionResource
from koku_dagster.uploads import upload_records
from koku_dagster.uploads.processing import UnknownUploadError, UploadLimits, process_upload
from koku_dagster.uploads.validation import send_validations

#: Payload runs take one slot of this pool (``dagster.yaml``: one at a time), so no two payloads
#: rewrite the same month partition at once.
PAYLOAD_POOL = "ocp_payloads"
#: Payload runs and the OpenShift summary runs they lead to carry this tag; ``dagster.yaml`` lets
#: one such run go at a time, so a summary never reads a month a payload is rewriting.
OCP_LINE_ITEMS_TAG = {"koku/ocp_line_items": "writer-or-reader"}
#: The tag naming a payload run's upload (Dagster tag values hold at most 63 characters).
REQUEST_ID_TAG = "koku/request_id"
#: Retries of an unexpected error (database, object store); an upload whose attempts (counted in
#: ``ocp_payload_upload.attempts``, across runs) exceed them is failed.
MAX_RETRIES = 2
#: ``dagster/max_runtime`` of a payload run. A 1M-row payload takes ~6 s (docs/benchmarks.md); the
#: largest accepted (4 GB unpacked, ~10M rows) about a minute after a download of at most 10 minutes;
#: an hour is five times that. Run monitoring fails a run still going after it.
PAYLOAD_MAX_RUNTIME_SECONDS = 3600
#: How long a payload waits for OpenShift summary steps reading the line items (see ``ingest.ocp_lock``).
LOCK_WAIT_SECONDS = 1800

ocp_payload_uploads = dg.AssetSpec(
    "ocp_payload_uploads",
    description=(
        "OpenShift payload announcements (table `ocp_payload_upload`), recorded by `ocp_upload_sensor` from "
        "KOKU_UPLOAD_TOPIC (group hccm-group) and processed by `ocp_payload_ingest` runs."
    ),
    group_name="sources",
    owners=OWNERS,
    code_version="1",
    kinds={"kafka", "sql"},
    metadata={"table": "ocp_payload_upload"},
)


class OcpPayloadConfig(dg.Config):
    """Which recorded announcement to process."""

    request_id: str


@dg.op(
    name="process_ocp_payload",
    pool=PAYLOAD_POOL,
    retry_policy=dg.RetryPolicy(max_retries=MAX_RETRIES, delay=30, backoff=dg.Backoff.EXPONENTIAL),
    description=(
        "Download the payload, match its cluster to an OpenShift provider, write the line items of the months "
        "it covers, record its manifest, and answer `success` or `failure` on KOKU_VALIDATION_TOPIC."
    ),
)
def process_ocp_payload(
    context: dg.OpExecutionContext,
    config: OcpPayloadConfig,
    app_db: ApplicationDatabase,
    object_store: ObjectStoreResource,
    kafka: KafkaResource,
    ingestion: IngestionResource,
) -> None:
    engine = app_db.engine()
    try:
        with ocp_line_items_lock(Path(ingestion.home), exclusive=True, timeout=LOCK_WAIT_SECONDS, engine=engine):
            outcome = process_upload(
                engine,
                config.request_id,
                object_store=object_store.object_store(),
                url_policy=object_store.url_policy(),
                work_dir=ingestion.work_dir(),
                limits=UploadLimits(retain_num_months=ingestion.retain_num_months),
            )
    except UnknownUploadError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    except Exception as exc:
        tried = upload_records.load_upload(engine, config.request_id)
        if tried is None or tried.attempts <= MAX_RETRIES:
            raise  # the retry policy tries again
        # Bounded, unlike Koku: the upload is answered `failure` instead of staying pending for ever.
        reason = f"gave up after {tried.attempts} attempts: {type(exc).__name__}"
        failed = upload_records.record_outcome(engine, config.request_id, state=upload_records.FAILURE, reason=reason)
        send_validations(engine, kafka.bootstrap_servers, kafka.validation_topic, [failed], security=kafka.security())
        raise dg.Failure(description=reason, allow_retries=False) from exc
    upload = outcome.upload
    meta = outcome.metadata()
    if outcome.result is not None:
        assert upload.provider_uuid is not None  # a converted payload was matched to its provider
        for month in outcome.result.months_changed:
            partition = dg.MultiPartitionKey({"provider": upload.provider_uuid, "billing_month": month.isoformat()})
            month_meta = outcome.month_metadata(month)
            context.log_event(
                dg.AssetMaterialization(
                    line_items.key,
                    partition=partition,
                    description=f"OpenShift payload {upload.request_id}",
                    metadata={**month_meta, "dagster/row_count": month_meta["rows"]},
                )
            )
    if not upload.validation_sent:
        delivered = send_validations(
            engine, kafka.bootstrap_servers, kafka.validation_topic, [upload], security=kafka.security()
        )
        if upload.request_id not in delivered:
            context.log.warning("validation result not delivered; ocp_upload_sensor sends it again")
    if not outcome.succeeded:
        context.log.error(f"OpenShift payload {upload.request_id} failed: {upload.reason}")
        raise dg.Failure(description=upload.reason or "failed", metadata=meta, allow_retries=False)
    changed = ", ".join(m.isoformat()[:7] for m in upload.months) or "none (already loaded)"
    context.log.info(f"OpenShift payload {upload.request_id} loaded for provider {upload.provider_uuid}: {changed}")
    context.log_event(dg.AssetObservation(ocp_payload_uploads.key, metadata=meta))


@dg.job(
    name="ocp_payload_ingest",
    executor_def=dg.in_process_executor,
    description="Process one OpenShift payload announcement (config: request_id).",
    tags={"koku/kind": "ocp-payload", "dagster/max_runtime": str(PAYLOAD_MAX_RUNTIME_SECONDS)},
)
def ocp_payload_ingest() -> None:
    process_ocp_payload()


def payload_run_request(request_id: str, attempt: int = 0) -> dg.RunRequest:
    """The run of :data:`ocp_payload_ingest` for one recorded upload (``attempt`` > 0: a run again
    after earlier runs ended without an outcome)."""
    return dg.RunRequest(
        run_key=f"ocp-payload:{request_id}" + (f":{attempt}" if attempt else ""),
        job_name=ocp_payload_ingest.name,
        run_config=dg.RunConfig(ops={process_ocp_payload.name: OcpPayloadConfig(request_id=request_id)}),
        tags={REQUEST_ID_TAG: request_id[:63], **OCP_LINE_ITEMS_TAG},
    )


__all__ = [
    "OCP_LINE_ITEMS_TAG",
    "REQUEST_ID_TAG",
    "OcpPayloadConfig",
    "ocp_payload_ingest",
    "ocp_payload_uploads",
    "payload_run_request",
]
