"""The provider-month workflow: manifest -> report files -> line items -> daily line items -> summary.

Each step is a plain function over a :class:`Workplace` (engine, object store, settings values),
records its state in the manifest tables, and returns a plain result; a failure is a
:class:`~koku_dagster.ingest.recording.WorkflowError`. Steps of one run may run on different
machines: each fetches every partition it reads from the object store and publishes only the
partitions it wrote. What differs by provider type comes from
the type (:mod:`koku_dagster.providers`). A manifest fully processed before is not processed again
unless forced (after a billing change).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from koku_dagster.focus import (
    CheckOutcome,
    FocusResult,
    build_focus,
    check_allowed_values,
    check_billed_totals,
    check_mandatory_columns,
    focus_dir,
    line_item_billed_totals,
)
from koku_dagster.infra.object_store import ObjectStore
from koku_dagster.ingest import manifests
from koku_dagster.ingest.provider import is_reachable, load_provider, report_availability
from koku_dagster.ingest.recording import (
    Purge,
    StepRefused,
    ensure_live,
    fail_step,
    purge_expired,
    recorded_step,
)
from koku_dagster.ingest.warehouse import refresh_views
from koku_dagster.providers import ProviderType, provider_type
from koku_dagster.providers.base import (
    DailyOutcome,
    MonthChecks,
    MonthPartition,
    ProviderContext,
    ReportAccess,
    WrittenTable,
)
from koku_dagster.reports.archive import ArchivedReports, archive_file
from koku_dagster.reports.errors import ManifestError
from koku_dagster.reports.model import Manifest, ReportFile, ReportSource
from koku_dagster.reports.paths import csv_dir
from koku_dagster.reports.results import LineItemsResult


@dataclass(frozen=True)
class Workplace:
    """What the workflow works with: the application tables, the object store and settings values."""

    engine: sa.Engine
    object_store: ObjectStore
    access: ReportAccess
    work_dir: Path
    warehouse: Path
    retain_num_months: int


@dataclass(frozen=True)
class _ProviderMonth:
    ctx: ProviderContext
    kind: ProviderType
    partition: MonthPartition


def _provider_month(w: Workplace, provider_uuid: str, month: date) -> _ProviderMonth:
    ctx = load_provider(w.engine, provider_uuid)
    if ctx is None:
        raise StepRefused(f"provider {provider_uuid} does not exist (deleted?)")
    partition = MonthPartition(
        schema=ctx.schema,
        provider_type=ctx.storage_type,
        provider_uuid=ctx.uuid,
        month=month,
        out_root=w.object_store.local_root,
        work_dir=w.work_dir,
        cluster_id=str(ctx.credentials.get("cluster_id") or ""),
    )
    return _ProviderMonth(ctx, provider_type(ctx.type), partition)


def _report_source(w: Workplace, pm: _ProviderMonth) -> ReportSource:
    return pm.kind.report_source(pm.ctx, w.access)


def _latest_manifest(w: Workplace, provider_uuid: str, month: date) -> manifests.ManifestRecord:
    found = manifests.latest_manifest(w.engine, provider_uuid, month)
    if found is None:
        raise StepRefused("no manifest recorded for this provider month; materialize report_manifest")
    return found


def _current_manifest(source: ReportSource, month: date, recorded: manifests.ManifestRecord) -> Manifest:
    """The manifest being processed, as the source shows it now (the same assembly as recorded)."""
    manifest = source.find_manifest(month)
    if manifest is None or manifest.assembly_id != recorded.assembly_id:
        raise ManifestError("the month's manifest changed during the run; the next poll picks it up")
    return manifest


# --- manifest -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestFound:
    """The month's manifest as recorded (``manifest_id``), or None with the reasons in ``notes``."""

    provider_type: str
    notes: tuple[str, ...]
    manifest: Manifest | None = None
    manifest_id: int | None = None

    def metadata(self) -> dict[str, Any]:
        assert self.manifest is not None
        return {
            "assembly_id": self.manifest.assembly_id,
            "manifest_id": self.manifest_id,
            "report_name": self.manifest.report_name,
            "files": len(self.manifest.files),
            "export_datetime": self.manifest.export_datetime.isoformat(),
            "provider_type": self.provider_type,
        }


def find_manifest(w: Workplace, provider_uuid: str, month: date, *, force: bool = False) -> ManifestFound:
    """Look for the month's manifest, report the source's availability, apply retention and record the
    manifest unless the source has not passed its reachability check, the month is too old or has no
    report yet, or its assembly was fully processed."""
    pm = _provider_month(w, provider_uuid, month)
    if not pm.kind.reads_reports:
        note = f"{pm.ctx.type} data arrives as uploaded payloads; there is no report to look for"
        return ManifestFound(pm.ctx.type, (note,))
    if not is_reachable(w.engine, provider_uuid):
        note = "not ingested: the source has not passed its reachability check (yet); see its availability status"
        return ManifestFound(pm.ctx.type, (note,))
    try:
        manifest = _report_source(w, pm).find_manifest(month)
    except ManifestError as exc:  # the report itself is wrong; the source is still reachable
        raise fail_step(w.engine, None, "download", exc, provider_uuid) from None
    except Exception as exc:
        raise fail_step(w.engine, None, "download", exc, provider_uuid, unavailable=True) from None
    report_availability(w.engine, provider_uuid, None)
    purge = purge_expired(w.engine, w.object_store, provider_uuid, w.retain_num_months)  # also when nothing is new
    notes = tuple(m for m in [purge.message()] if m)
    if month < purge.cutoff:
        old = f"{month:%Y-%m} is older than the {w.retain_num_months} months kept; not ingested"
        return ManifestFound(pm.ctx.type, (*notes, old))
    if manifest is None:
        return ManifestFound(pm.ctx.type, (*notes, f"no manifest for {month:%Y-%m} yet"))
    if not force and manifests.is_fully_processed(w.engine, provider_uuid, manifest.assembly_id):
        done = f"assembly {manifest.assembly_id} was fully processed before; nothing to do"
        return ManifestFound(pm.ctx.type, (*notes, done))
    recorded = manifests.record_manifest(
        w.engine, provider_uuid, manifest.assembly_id, month, [f.name for f in manifest.files], manifest.export_datetime
    )
    stale = manifests.other_month_manifests(w.engine, provider_uuid, month, manifest.assembly_id)
    manifests.carry_etags(w.engine, stale, recorded.id)
    manifests.delete_manifests(w.engine, stale)
    return ManifestFound(pm.ctx.type, notes, manifest, recorded.id)


# --- report files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilesFetched:
    """The month's report files as archived under ``data/csv/...``."""

    assembly_id: str
    files: int
    fetched: int
    unchanged: int
    bytes: int
    archive: Path


def _archive_files(
    w: Workplace, source: ReportSource, manifest: Manifest, manifest_id: int, archive: Path
) -> list[tuple[bool, int]]:
    """Archive every file unless the archived copy has the same etag; (fetched, size) per file."""
    statuses = manifests.file_statuses(w.engine, manifest_id)

    def fetch(file: ReportFile) -> tuple[bool, int]:
        etag = source.etag(file.key)
        target = archive / file.name
        if statuses.get(file.name, {}).get("etag") == etag[:64] and target.exists():
            return False, target.stat().st_size
        size = archive_file(source, file.key, target)
        manifests.set_file_status(w.engine, manifest_id, file.name, manifests.FileStatus.DOWNLOADING, etag=etag)
        return True, size

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(fetch, manifest.files))
    keep = {f.name for f in manifest.files}
    for stale in archive.glob("*") if archive.exists() else []:
        if stale.is_file() and stale.name not in keep:
            stale.unlink()  # files of a replaced assembly
    return outcomes


def fetch_files(w: Workplace, provider_uuid: str, month: date) -> FilesFetched:
    """Fetch the recorded manifest's report files (etag checks) and archive them in the object store."""
    pm = _provider_month(w, provider_uuid, month)
    recorded = _latest_manifest(w, provider_uuid, month)
    archive = csv_dir(pm.partition.out_root, pm.ctx.schema, pm.ctx.storage_type, provider_uuid, month)
    manifests.set_step(w.engine, recorded.id, "download", "start")
    with recorded_step(w.engine, recorded.id, "download", provider_uuid, files=True):
        source = _report_source(w, pm)
        manifest = _current_manifest(source, month, recorded)
        w.object_store.fetch(archive)  # the archived copies the etag checks keep (maybe from another machine)
        outcomes = _archive_files(w, source, manifest, recorded.id, archive)
        w.object_store.publish(archive)
    ensure_live(w.engine, w.object_store, provider_uuid)
    manifests.set_step(w.engine, recorded.id, "download", "end")
    fetched = sum(1 for done, _ in outcomes if done)
    return FilesFetched(
        recorded.assembly_id,
        len(manifest.files),
        fetched,
        len(outcomes) - fetched,
        sum(n for _, n in outcomes),
        archive,
    )


# --- line items, daily line items, summary ------------------------------------------------------


def convert_line_items(w: Workplace, provider_uuid: str, month: date) -> LineItemsResult:
    """Convert the archived report files into the month's line items (replaced whole)."""
    pm = _provider_month(w, provider_uuid, month)
    if not pm.kind.reads_reports:
        raise StepRefused(f"{pm.ctx.type} line items arrive as uploaded payloads, not from report files")
    recorded = _latest_manifest(w, provider_uuid, month)
    archive = csv_dir(pm.partition.out_root, pm.ctx.schema, pm.ctx.storage_type, provider_uuid, month)
    manifests.set_step(w.engine, recorded.id, "processing", "start")
    with recorded_step(w.engine, recorded.id, "processing", provider_uuid, files=True):
        manifest = _current_manifest(_report_source(w, pm), month, recorded)
        w.object_store.fetch(archive)
        for file in manifest.files:
            manifests.set_file_status(w.engine, recorded.id, file.name, manifests.FileStatus.PROCESSING)
        result = pm.kind.convert(ArchivedReports(archive, manifest), manifest, pm.partition)
        w.object_store.publish(result.partition)
    ensure_live(w.engine, w.object_store, provider_uuid)
    for file in manifest.files:
        manifests.set_file_status(w.engine, recorded.id, file.name, manifests.FileStatus.DONE)
    manifests.mark_setup_complete(w.engine, provider_uuid)
    manifests.set_step(w.engine, recorded.id, "processing", "end")
    return result


@dataclass(frozen=True)
class DailyBuilt:
    """The month's daily line items; ``outcome`` None when the type's summary reads the line items."""

    provider_type: str
    outcome: DailyOutcome | None


def _fetch_all(object_store: ObjectStore, directories: list[Path]) -> None:
    for directory in directories:
        object_store.fetch(directory)


def build_daily(w: Workplace, provider_uuid: str, month: date) -> DailyBuilt:
    """Aggregate the month's line items per day (OpenShift: per report type)."""
    pm = _provider_month(w, provider_uuid, month)
    if not pm.kind.has_daily_table:
        return DailyBuilt(pm.ctx.type, None)
    recorded = _latest_manifest(w, provider_uuid, month)
    with recorded_step(w.engine, recorded.id, "summary", provider_uuid):
        _fetch_all(w.object_store, pm.kind.line_item_dirs(pm.partition))
        outcome = pm.kind.daily(pm.partition)
        for partition in outcome.partitions:
            w.object_store.publish(partition)
    ensure_live(w.engine, w.object_store, provider_uuid)
    return DailyBuilt(pm.ctx.type, outcome)


@dataclass(frozen=True)
class SummaryBuilt:
    """The month of the type's summary table, the figures of its checks, and what retention removed."""

    table: str
    result: WrittenTable
    checks: MonthChecks
    assembly_id: str
    purge: Purge


def build_summary(w: Workplace, provider_uuid: str, month: date) -> SummaryBuilt:
    """Compute the month's summary, complete the manifest, apply retention and refresh the warehouse views."""
    pm = _provider_month(w, provider_uuid, month)
    recorded = _latest_manifest(w, provider_uuid, month)
    manifests.set_step(w.engine, recorded.id, "summary", "start")
    with recorded_step(w.engine, recorded.id, "summary", provider_uuid):
        inputs = pm.kind.line_item_dirs(pm.partition) + pm.kind.daily_dirs(pm.partition)
        _fetch_all(w.object_store, inputs)  # footers hold raw totals
        result = pm.kind.summary(pm.partition)
        w.object_store.publish(result.partition)
        checks = pm.kind.checks(pm.partition)
    ensure_live(w.engine, w.object_store, provider_uuid)
    manifests.set_step(w.engine, recorded.id, "summary", "end")
    manifests.mark_manifest_complete(w.engine, recorded.id, provider_uuid)
    purge = purge_expired(w.engine, w.object_store, provider_uuid, w.retain_num_months)
    refresh_views(w.warehouse, pm.partition.out_root)
    return SummaryBuilt(pm.kind.summary_table, result, checks, recorded.assembly_id, purge)


# --- FOCUS ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FocusBuilt:
    """The month's FOCUS rows and their checks; ``result`` None for types without costs (OpenShift)."""

    provider_type: str
    result: FocusResult | None
    checks: tuple[CheckOutcome, ...] = ()


def build_focus_month(w: Workplace, provider_uuid: str, month: date) -> FocusBuilt:
    """Write the month's line items as FOCUS 1.2 rows under ``data/focus/...`` and check them."""
    pm = _provider_month(w, provider_uuid, month)
    if not pm.kind.reads_reports:
        return FocusBuilt(pm.ctx.type, None)
    recorded = _latest_manifest(w, provider_uuid, month)
    with recorded_step(w.engine, recorded.id, "summary", provider_uuid):
        line_item_dirs = pm.kind.line_item_dirs(pm.partition)
        _fetch_all(w.object_store, line_item_dirs)
        result = build_focus(
            line_item_dirs,
            provider_type=pm.ctx.type,
            provider_uuid=provider_uuid,
            month=month,
            out_dir=focus_dir(pm.partition.out_root, provider_uuid, month),
            work_dir=w.work_dir,
        )
        w.object_store.publish(result.partition)
        expected = line_item_billed_totals(line_item_dirs, pm.ctx.type)
        files = list(result.files)
        checks = (check_billed_totals(files, expected), check_mandatory_columns(files), check_allowed_values(files))
    ensure_live(w.engine, w.object_store, provider_uuid)
    return FocusBuilt(pm.ctx.type, result, checks)
