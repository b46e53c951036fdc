"""Process one announced OpenShift payload: download, match the cluster, convert, archive, record.

Steps of :func:`process_upload`, each reusing :mod:`koku_dagster.providers.ocp_payload` and
:mod:`koku_dagster.providers.ocp`:

1. download the tarball under the outbound URL policy (:mod:`koku_dagster.uploads.download`; size
   and time limits of :class:`UploadLimits`) and read ``manifest.json`` before anything is extracted;
2. find the active OCP provider with the manifest's cluster id whose customer has the
   announcement's org (none: failure);
3. extract the listed CSVs into a scratch folder and convert them into the month partitions
   (per-day files, no double counting): only months of the manifest (a row of another month refuses
   the payload), and of them only the retention window up to the current month;
4. archive the CSVs under ``data/csv/{schema}/OCP/source={uuid}/year=YYYY/month=MM/{manifest uuid}/``
   for each month the rows fall in, publish the changed partitions, and record one manifest row
   per changed month (assembly id = the payload uuid; ``{uuid}:YYYY-MM`` for a further month) with
   every file done;
5. record ``success`` with the changed months.

An :class:`~koku_dagster.reports.errors.IngestError` (bad download, unsafe or damaged tarball, bad
manifest, missing or malformed CSV, unknown cluster) records ``failure`` with its reason and leaves
the object store and manifests untouched (a CSV that turns out malformed after other report types
of the same payload were converted is the exception: those types stay). Other errors (database,
object store) propagate and leave the upload ``pending`` for a retry. Processing the same upload
again leaves the same state.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from koku_dagster.infra.db.schema import customer, provider, provider_authentication, provider_billing_source
from koku_dagster.infra.db.types import utcnow
from koku_dagster.infra.object_store import ObjectStore
from koku_dagster.ingest import manifests
from koku_dagster.ingest.polling import billing_months
from koku_dagster.ingest.provider import discard_if_deleted
from koku_dagster.providers import REGISTRY, ocp
from koku_dagster.providers.ocp_payload import MAX_UNPACKED_BYTES, PayloadManifest, extract_payload, read_manifest
from koku_dagster.reports.errors import IngestError
from koku_dagster.reports.paths import csv_dir, ocp_line_items_dir
from koku_dagster.uploads import upload_records
from koku_dagster.uploads.announcements import shown_url
from koku_dagster.uploads.download import MAX_DOWNLOAD_SECONDS, UrlPolicy, fetch_payload
from koku_dagster.uploads.upload_records import FAILURE, SUCCESS, Upload

log = logging.getLogger(__name__)

#: Largest payload downloaded (the operator's own limit is 100 MB per package by default).
MAX_PAYLOAD_BYTES = 512 << 20
#: Seconds allowed to connect, and between two reads, while downloading.
DOWNLOAD_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class UploadLimits:
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    max_unpacked_bytes: int = MAX_UNPACKED_BYTES
    timeout_seconds: float = DOWNLOAD_TIMEOUT_SECONDS
    max_download_seconds: float = MAX_DOWNLOAD_SECONDS
    #: ``KOKU_RETAIN_NUM_MONTHS``: months a payload may write, up to the current month.
    retain_num_months: int = 4


class UnknownUploadError(LookupError):
    """No announcement was recorded under this request id."""


class ClusterNotFoundError(IngestError):
    """No active OpenShift provider of the announcement's org has the payload's cluster id."""


@dataclass(frozen=True)
class ClusterProvider:
    uuid: str
    schema: str


def find_cluster_provider(engine: sa.Engine, org_id: str, cluster_id: str) -> ClusterProvider:
    """The org's OCP provider whose credentials hold ``cluster_id``; :class:`ClusterNotFoundError` otherwise."""
    query = (
        sa.select(
            provider.c.uuid,
            provider.c.active,
            provider.c.paused,
            customer.c.schema_name,
            provider_authentication.c.credentials,
        )
        .select_from(provider)
        .join(customer, customer.c.id == provider.c.customer_id)
        .join(provider_authentication, provider_authentication.c.id == provider.c.authentication_id)
        .where(provider.c.type == "OCP", customer.c.org_id == org_id)
        .order_by(provider.c.created_timestamp)
    )
    with engine.connect() as conn:
        rows = [r for r in conn.execute(query).mappings() if (r["credentials"] or {}).get("cluster_id") == cluster_id]
    usable = [r for r in rows if r["active"] and not r["paused"]]
    if not usable:
        cluster = f"cluster {cluster_id[:100]!r} of org {org_id}"
        if rows:
            raise ClusterNotFoundError(f"the OpenShift provider for {cluster} is paused or inactive")
        raise ClusterNotFoundError(f"no OpenShift provider is known for {cluster}")
    return ClusterProvider(usable[0]["uuid"], usable[0]["schema_name"])


def foreign_local_folders(engine: sa.Engine, org_id: str) -> tuple[Path, ...]:
    """The folders ``-local`` providers of other orgs read: a ``file://`` payload may not lie in them."""
    keys = {name: t.local_directory_key for name, t in REGISTRY.items() if t.local_directory_key}
    query = (
        sa.select(provider.c.type, provider_billing_source.c.data_source)
        .select_from(provider)
        .join(customer, customer.c.id == provider.c.customer_id)
        .join(provider_billing_source, provider_billing_source.c.id == provider.c.billing_source_id)
        .where(provider.c.type.in_(sorted(keys)), customer.c.org_id != org_id)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    folders = [(data_source or {}).get(keys[kind]) for kind, data_source in rows]
    return tuple(Path(f).resolve() for f in folders if isinstance(f, str) and f.startswith("/") and "\x00" not in f)


@dataclass(frozen=True)
class UploadOutcome:
    """What became of an upload; ``result`` is set on success."""

    upload: Upload
    manifest: PayloadManifest | None = None
    result: ocp.PayloadResult | None = None
    schema: str | None = None
    archived_files: int = 0
    seconds: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.upload.state == SUCCESS

    def metadata(self) -> dict[str, Any]:
        """Flat figures for Dagster metadata (never the URL's query string or the identity)."""
        meta: dict[str, Any] = {
            "request_id": self.upload.request_id,
            "state": self.upload.state,
            "org_id": self.upload.org_id,
            "url": shown_url(self.upload.url),
            "attempts": self.upload.attempts,
            "seconds": round(self.seconds, 3),
        }
        if self.upload.reason:
            meta["reason"] = self.upload.reason
        if self.upload.provider_uuid:
            meta["provider_uuid"] = self.upload.provider_uuid
        if self.manifest is not None:
            meta |= {k: v for k, v in self.manifest.metadata().items() if v is not None}
        if self.result is not None:
            meta |= self.result.metadata() | {"archived_files": self.archived_files}
        return meta

    def month_metadata(self, month: date) -> dict[str, Any]:
        """Figures of one changed month (for the ``line_items`` partition it materializes)."""
        assert self.result is not None
        days = [d for d in self.result.days if d.day.replace(day=1) == month]
        outcomes = Counter(d.outcome for d in days)
        return {
            "request_id": self.upload.request_id,
            "manifest_uuid": self.result.manifest_uuid,
            "cluster_id": self.result.cluster_id,
            "rows": sum(d.rows for d in days if d.outcome != "skipped"),
            "days": sorted({d.day.isoformat() for d in days}),
            "day_files_written": outcomes["written"],
            "day_files_replaced": outcomes["replaced"],
            "day_files_skipped": outcomes["skipped"],
            "report_types": sorted({d.report_type for d in days if d.outcome != "skipped"}),
        }


def _reason(exc: Exception, url: str) -> str:
    """``Type: message`` with nothing of the URL beyond what :func:`shown_url` shows."""
    text = f"{type(exc).__name__}: {exc}"
    parts = urlsplit(url)
    for secret in (url, parts.query, parts.fragment, parts.netloc if "@" in parts.netloc else ""):
        if secret:
            text = text.replace(secret, "<redacted>" if secret != url else shown_url(url))
    return text


def _archive(
    files: dict[str, Path],
    manifest: PayloadManifest,
    result: ocp.PayloadResult,
    target: ClusterProvider,
    object_store: ObjectStore,
) -> list[Path]:
    """Copy the payload's CSVs into a per-payload folder of each month its kept rows fall in."""
    folders = []
    for month in sorted({day.replace(day=1) for day in result.days_covered}):
        folder = csv_dir(object_store.local_root, target.schema, ocp.OCP.family, target.uuid, month) / manifest.uuid
        folder.mkdir(parents=True, exist_ok=True)
        for name, path in files.items():
            staging = folder / f".{name}.part"
            shutil.copyfile(path, staging)
            staging.replace(folder / name)
        folders.append(folder)
    return folders


def _record_manifests(
    engine: sa.Engine,
    target: ClusterProvider,
    manifest: PayloadManifest,
    months: tuple[date, ...],
    started: datetime,
    downloaded: datetime,
    processed: datetime,
) -> None:
    billing = manifest.months[0]
    for month in months:
        assembly = manifest.uuid if month == billing else f"{manifest.uuid}:{month:%Y-%m}"
        recorded = manifests.record_manifest(engine, target.uuid, assembly, month, manifest.files, manifest.date)
        manifests.set_files_done(engine, recorded.id, manifest.files)
        manifests.record_step(engine, recorded.id, "download", started, downloaded)
        manifests.record_step(engine, recorded.id, "processing", downloaded, processed)


def _record_failure(
    engine: sa.Engine,
    request_id: str,
    reason: str,
    manifest: PayloadManifest | None,
    target: ClusterProvider | None,
    started: datetime,
) -> UploadOutcome:
    log.warning("OpenShift payload %s failed: %s", request_id, reason)
    after = upload_records.record_outcome(
        engine,
        request_id,
        state=FAILURE,
        reason=reason,
        manifest_uuid=manifest.uuid[:64] if manifest else None,
        cluster_id=manifest.cluster_id if manifest else None,
        provider_uuid=target.uuid if target else None,
    )
    schema = target.schema if target else None
    return UploadOutcome(after, manifest, schema=schema, seconds=(utcnow() - started).total_seconds())


def _publish(
    object_store: ObjectStore, folders: list[Path], result: ocp.PayloadResult, target: ClusterProvider
) -> None:
    """Publish the archived CSV folders and every line-item month the payload rewrote."""
    for folder in folders:
        object_store.publish(folder)
    changed = {(d.report_type, d.day.replace(day=1)) for d in result.days if d.outcome != "skipped"}
    for report_type, month in sorted(changed):
        object_store.publish(
            ocp_line_items_dir(object_store.local_root, target.schema, report_type, target.uuid, month)
        )


def process_upload(
    engine: sa.Engine,
    request_id: str,
    *,
    object_store: ObjectStore,
    url_policy: UrlPolicy,
    work_dir: Path,
    limits: UploadLimits = UploadLimits(),
) -> UploadOutcome:
    """Process the recorded upload ``request_id`` (see the module docstring); return its outcome."""
    upload = upload_records.load_upload(engine, request_id)
    if upload is None:
        raise UnknownUploadError(f"no upload announced with request id {request_id[:255]!r}")
    upload_records.start_attempt(engine, request_id)
    started = utcnow()
    manifest: PayloadManifest | None = None
    target: ClusterProvider | None = None
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="ocp-payload-") as tmp:
        try:
            tar = fetch_payload(
                upload.url,
                Path(tmp) / "payload.tar.gz",
                max_bytes=limits.max_payload_bytes,
                timeout=limits.timeout_seconds,
                policy=replace(url_policy, refused_dirs=foreign_local_folders(engine, upload.org_id)),
                max_seconds=limits.max_download_seconds,
            )
            manifest = read_manifest(tar, max_total_bytes=limits.max_unpacked_bytes)
            target = find_cluster_provider(engine, upload.org_id, manifest.cluster_id)
            downloaded = utcnow()
            files = extract_payload(tar, Path(tmp) / "files", manifest, max_total_bytes=limits.max_unpacked_bytes)
            result = ocp.convert_payload(
                files,
                manifest,
                schema=target.schema,
                provider_uuid=target.uuid,
                out_root=object_store.local_root,
                kept_months=billing_months(utcnow().date(), limits.retain_num_months),
                prepare_partition=object_store.fetch,  # an s3:// store's mirror needs the month's kept day files
            )
        except IngestError as exc:
            return _record_failure(engine, request_id, _reason(exc, upload.url), manifest, target, started)
        processed = utcnow()
        folders = _archive(files, manifest, result, target, object_store)
    _publish(object_store, folders, result, target)
    _record_manifests(engine, target, manifest, result.months_changed, started, downloaded, processed)
    if discard_if_deleted(engine, object_store, target.uuid):
        reason = f"the OpenShift provider {target.uuid} was deleted or deactivated while the payload was processed"
        after = upload_records.record_outcome(
            engine, request_id, state=FAILURE, reason=reason, cluster_id=manifest.cluster_id
        )
        return UploadOutcome(after, manifest, schema=target.schema, seconds=(utcnow() - started).total_seconds())
    if result.months_changed:
        manifests.mark_setup_complete(engine, target.uuid)
    after = upload_records.record_outcome(
        engine,
        request_id,
        state=SUCCESS,
        reason=None,
        manifest_uuid=manifest.uuid,
        cluster_id=manifest.cluster_id,
        provider_uuid=target.uuid,
        months=result.months_changed,
    )
    log.info(
        "OpenShift payload %s (manifest %s, cluster %s) loaded for provider %s: months %s",
        request_id,
        manifest.uuid,
        manifest.cluster_id,
        target.uuid,
        ", ".join(f"{m:%Y-%m}" for m in result.months_changed) or "none changed",
    )
    return UploadOutcome(
        after, manifest, result, target.schema, len(files) * len(folders), (utcnow() - started).total_seconds()
    )
