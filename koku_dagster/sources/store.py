"""Load and save :class:`SourceRecord` rows of ``api_sources``; writes only what changed."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from koku_dagster.infra.db.schema import sources
from koku_dagster.infra.db.types import utcnow
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


_UPDATE_MANY = (
    sa.update(sources)
    .where(sources.c.source_id == sa.bindparam("key_source_id"))
    .values({name: sa.bindparam(name) for name in [*_FIELDS, "updated_timestamp"] if name != "source_id"})
)


def save_records(conn: sa.Connection, changes: Iterable[tuple[SourceRecord | None, SourceRecord | None]]) -> int:
    """Persist many changes with one statement per kind (insert, update, delete); return how many."""
    now = utcnow()
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    deletes: list[int] = []
    for before, after in changes:
        if before == after:
            continue
        if after is None:
            assert before is not None
            deletes.append(before.source_id)
        elif before is None:
            inserts.append({**_row_values(after), "updated_timestamp": now})
        else:
            values = {**_row_values(after), "updated_timestamp": now}
            values["key_source_id"] = values.pop("source_id")
            updates.append(values)
    if inserts:
        conn.execute(sa.insert(sources), inserts)
    if updates:
        conn.execute(_UPDATE_MANY, updates)
    for start in range(0, len(deletes), 500):
        conn.execute(sa.delete(sources).where(sources.c.source_id.in_(deletes[start : start + 500])))
    return len(inserts) + len(updates) + len(deletes)


def save_record(conn: sa.Connection, before: SourceRecord | None, after: SourceRecord | None) -> bool:
    """Persist the change from ``before`` to ``after``; return whether anything was written."""
    return save_records(conn, [(before, after)]) > 0
