"""Manifest and per-file status records (``reporting_common_costusagereport{manifest,status}``).

Koku's semantics: a manifest is identified by (provider, assembly id); each report file has a
status row (1 done, 2 failed, 3 downloading, 4 processing); ``state`` holds the start, end or
failure of the download, processing and summary steps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from enum import IntEnum
from typing import Any, Literal

import sqlalchemy as sa

from koku_dagster.infra.db.schema import manifest, provider, report_status
from koku_dagster.infra.db.types import utcnow

Step = Literal["download", "processing", "summary"]


class FileStatus(IntEnum):
    DONE = 1
    FAILED = 2
    DOWNLOADING = 3
    PROCESSING = 4


@dataclass(frozen=True)
class ManifestRecord:
    id: int
    provider_id: str
    assembly_id: str
    billing_period_start: date
    num_total_files: int
    completed_datetime: datetime | None
    state: dict[str, Any]


def _as_record(row: Any) -> ManifestRecord:
    return ManifestRecord(
        id=row["id"],
        provider_id=row["provider_id"],
        assembly_id=row["assembly_id"],
        billing_period_start=row["billing_period_start_datetime"].date(),
        num_total_files=row["num_total_files"],
        completed_datetime=row["completed_datetime"],
        state=dict(row["state"] or {}),
    )


def _month_start(month: date) -> datetime:
    return datetime(month.year, month.month, 1, tzinfo=utcnow().tzinfo)


def record_manifest(
    engine: sa.Engine,
    provider_uuid: str,
    assembly_id: str,
    month: date,
    file_names: Iterable[str],
    export_datetime: datetime | None,
) -> ManifestRecord:
    """Get or create the manifest row and one status row per file (idempotent)."""
    names = sorted(set(file_names))
    now = utcnow()
    with engine.begin() as conn:
        key = (manifest.c.provider_id == provider_uuid, manifest.c.assembly_id == assembly_id)
        row = conn.execute(sa.select(manifest).where(*key)).mappings().first()
        if row is None:
            conn.execute(
                sa.insert(manifest).values(
                    provider_id=provider_uuid,
                    assembly_id=assembly_id,
                    billing_period_start_datetime=_month_start(month),
                    num_total_files=len(names),
                    creation_datetime=now,
                    export_datetime=export_datetime,
                    state={},
                )
            )
            row = conn.execute(sa.select(manifest).where(*key)).mappings().one()
        known = set(
            conn.execute(
                sa.select(report_status.c.report_name).where(report_status.c.manifest_id == row["id"])
            ).scalars()
        )
        for name in names:
            if name not in known:
                conn.execute(
                    sa.insert(report_status).values(
                        manifest_id=row["id"], report_name=name, status=int(FileStatus.DOWNLOADING)
                    )
                )
        total = len(set(names) | known)
        if row["num_total_files"] != total:
            conn.execute(sa.update(manifest).where(manifest.c.id == row["id"]).values(num_total_files=total))
        row = conn.execute(sa.select(manifest).where(manifest.c.id == row["id"])).mappings().one()
    return _as_record(row)


def file_statuses(engine: sa.Engine, manifest_id: int) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(report_status).where(report_status.c.manifest_id == manifest_id)).mappings()
        return {r["report_name"]: dict(r) for r in rows}


def set_file_status(
    engine: sa.Engine, manifest_id: int, report_name: str, status: FileStatus, *, etag: str | None = None
) -> None:
    now = utcnow()
    values: dict[str, Any] = {"status": int(status)}
    if status == FileStatus.PROCESSING:
        values.update(started_datetime=now, completed_datetime=None)
    elif status == FileStatus.DONE:
        values["completed_datetime"] = now
    elif status == FileStatus.FAILED:
        values.update(started_datetime=None, completed_datetime=None)
    if etag is not None:
        values["etag"] = etag[:64]
    with engine.begin() as conn:
        conn.execute(
            sa.update(report_status)
            .where(report_status.c.manifest_id == manifest_id, report_status.c.report_name == report_name)
            .values(**values)
        )


def set_step(
    engine: sa.Engine, manifest_id: int, step: Step, event: Literal["start", "end", "failed"], error: str | None = None
) -> None:
    """Record a step's start (clearing its previous values), end or failure in ``state``."""
    now = utcnow()
    with engine.begin() as conn:
        state = dict(conn.execute(sa.select(manifest.c.state).where(manifest.c.id == manifest_id)).scalar() or {})
        entry = {} if event == "start" else dict(state.get(step) or {})
        entry[event] = now.isoformat()
        if event != "start" and "start" in entry:
            entry["time_taken_seconds"] = round((now - datetime.fromisoformat(entry["start"])).total_seconds(), 3)
        if error:
            entry["error"] = error[:500]
        state[step] = entry
        conn.execute(sa.update(manifest).where(manifest.c.id == manifest_id).values(state=state))


def record_step(engine: sa.Engine, manifest_id: int, step: Step, start: datetime, end: datetime) -> None:
    """Record a step that already ran, with its own start and end times, in ``state``."""
    with engine.begin() as conn:
        state = dict(conn.execute(sa.select(manifest.c.state).where(manifest.c.id == manifest_id)).scalar() or {})
        state[step] = {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "time_taken_seconds": round((end - start).total_seconds(), 3),
        }
        conn.execute(sa.update(manifest).where(manifest.c.id == manifest_id).values(state=state))


def set_files_done(engine: sa.Engine, manifest_id: int, report_names: Iterable[str]) -> None:
    """Mark files done in one transaction (started now unless a start is already recorded)."""
    now = utcnow()
    names = sorted(set(report_names))
    if not names:
        return
    with engine.begin() as conn:
        key = (report_status.c.manifest_id == manifest_id, report_status.c.report_name.in_(names))
        conn.execute(
            sa.update(report_status)
            .where(*key, report_status.c.started_datetime.is_(None))
            .values(started_datetime=now)
        )
        conn.execute(sa.update(report_status).where(*key).values(status=int(FileStatus.DONE), completed_datetime=now))


def manifest_ready_for_summary(engine: sa.Engine, manifest_id: int) -> bool:
    statuses = file_statuses(engine, manifest_id)
    return bool(statuses) and all(s["completed_datetime"] is not None for s in statuses.values())


def is_fully_processed(engine: sa.Engine, provider_uuid: str, assembly_id: str) -> bool:
    """Same assembly already summarized and every file done: nothing to do again."""
    with engine.connect() as conn:
        row = (
            conn.execute(
                sa.select(manifest).where(
                    manifest.c.provider_id == provider_uuid, manifest.c.assembly_id == assembly_id
                )
            )
            .mappings()
            .first()
        )
    return row is not None and row["completed_datetime"] is not None and manifest_ready_for_summary(engine, row["id"])


def mark_manifest_complete(engine: sa.Engine, manifest_id: int, provider_uuid: str) -> None:
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(sa.update(manifest).where(manifest.c.id == manifest_id).values(completed_datetime=now))
        conn.execute(sa.update(provider).where(provider.c.uuid == provider_uuid).values(data_updated_timestamp=now))


def mark_setup_complete(engine: sa.Engine, provider_uuid: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.update(provider)
            .where(provider.c.uuid == provider_uuid, ~provider.c.setup_complete)
            .values(setup_complete=True)
        )


def latest_manifest(engine: sa.Engine, provider_uuid: str, month: date) -> ManifestRecord | None:
    """The month's most recently recorded manifest."""
    with engine.connect() as conn:
        row = (
            conn.execute(
                sa.select(manifest)
                .where(
                    manifest.c.provider_id == provider_uuid,
                    manifest.c.billing_period_start_datetime == _month_start(month),
                )
                .order_by(manifest.c.id.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
    return _as_record(row) if row is not None else None


def other_month_manifests(engine: sa.Engine, provider_uuid: str, month: date, keep_assembly: str) -> list[int]:
    """Ids of the month's manifests that a newer assembly replaces."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(manifest.c.id).where(
                    manifest.c.provider_id == provider_uuid,
                    manifest.c.billing_period_start_datetime == _month_start(month),
                    manifest.c.assembly_id != keep_assembly,
                )
            ).scalars()
        )


def carry_etags(engine: sa.Engine, replaced: list[int], manifest_id: int) -> None:
    """Give the new manifest's files the etags their same-named files had in the manifests it replaces
    (the newest wins), so that a file a re-export left unchanged is not fetched again (its archived copy
    stays); files whose etag differs are fetched as usual."""
    if not replaced:
        return
    old = report_status.c
    with engine.begin() as conn:
        rows = conn.execute(
            sa.select(old.report_name, old.etag)
            .where(old.manifest_id.in_(replaced), old.etag.is_not(None))
            .order_by(old.manifest_id)
        ).tuples()
        for name, etag in dict(rows.all()).items():
            conn.execute(
                sa.update(report_status)
                .where(old.manifest_id == manifest_id, old.report_name == name, old.etag.is_(None))
                .values(etag=etag)
            )


def delete_manifest_rows(conn: sa.Connection, manifest_ids: list[int] | sa.Select[Any]) -> None:
    """Delete manifests (given by ids or an id query) and their file statuses, within ``conn``."""
    conn.execute(sa.delete(report_status).where(report_status.c.manifest_id.in_(manifest_ids)))
    conn.execute(sa.delete(manifest).where(manifest.c.id.in_(manifest_ids)))


def provider_manifests(provider_uuid: str) -> sa.Select[Any]:
    """The ids of a provider's manifests, as a query (for :func:`delete_manifest_rows`)."""
    return sa.select(manifest.c.id).where(manifest.c.provider_id == provider_uuid)


def delete_manifests(engine: sa.Engine, manifest_ids: list[int]) -> None:
    if manifest_ids:
        with engine.begin() as conn:
            delete_manifest_rows(conn, manifest_ids)


def purge_manifests_before(engine: sa.Engine, provider_uuid: str, cutoff: date) -> int:
    """Delete the provider's manifests of months before ``cutoff``; return how many."""
    with engine.connect() as conn:
        ids = list(
            conn.execute(
                sa.select(manifest.c.id).where(
                    manifest.c.provider_id == provider_uuid,
                    manifest.c.billing_period_start_datetime < _month_start(cutoff),
                )
            ).scalars()
        )
    delete_manifests(engine, ids)
    return len(ids)
