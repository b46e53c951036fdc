"""Load and save :class:`SourceRecord` rows of ``api_sources``; writes only what changed."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from koku_dagster.db.schema import sources
from koku_dagster.db.types import utcnow
from koku_dagster.sources.model import SourceRecord

_FIELDS = [f.name for f in dataclasses.fields(SourceRecord)]


def record_from_row(row: Mapping[str, Any]) -> SourceRecord:
    values = {name: row[name] for name in _FIELDS}
    values["authentication"] = values["authentication"] or {}
    values["billing_source"] = values["billing_source"] or {}
    values["status"] = values["status"] or None
    return SourceRecord(**values)


def _row_values(record: SourceRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in _FIELDS}


def load_records(conn: sa.Connection, source_ids: Iterable[int]) -> dict[int, SourceRecord]:
    ids = sorted(set(source_ids))
    found: dict[int, SourceRecord] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for row in conn.execute(sa.select(sources).where(sources.c.source_id.in_(chunk))).mappings():
            found[row["source_id"]] = record_from_row(row)
    return found


def load_record(conn: sa.Connection, source_id: int) -> SourceRecord | None:
    return load_records(conn, [source_id]).get(source_id)


def save_record(conn: sa.Connection, before: SourceRecord | None, after: SourceRecord | None) -> bool:
    """Persist the change from ``before`` to ``after``; return whether anything was written."""
    if before == after:
        return False
    if after is None:
        assert before is not None
        conn.execute(sa.delete(sources).where(sources.c.source_id == before.source_id))
        return True
    values = _row_values(after)
    values["updated_timestamp"] = utcnow()
    if before is None:
        conn.execute(sa.insert(sources).values(**values))
    else:
        conn.execute(sa.update(sources).where(sources.c.source_id == after.source_id).values(**values))
    return True
