"""Load and save the ``api_sources`` rows (as :class:`SourceRecord`); writes only what changed."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from koku_dagster.infra.db.schema import sources
from koku_dagster.infra.db.types import utcnow
from koku_dagster.sources.model import SourceRecord

_FIELDS = [f.name for f in dataclasses.fields(SourceRecord)]
#: Ids per ``IN (...)`` list.
_IDS_PER_QUERY = 500

#: (row before, row after) of one source; None before for an insert, None after for a delete.
SourceChange = tuple[SourceRecord | None, SourceRecord | None]


def source_from_row(row: Mapping[Any, Any]) -> SourceRecord:
    values = {name: row[name] for name in _FIELDS}
    values["authentication"] = values["authentication"] or {}
    values["billing_source"] = values["billing_source"] or {}
    values["status"] = values["status"] or None
    return SourceRecord(**values)


def _row_values(source: SourceRecord) -> dict[str, Any]:
    return {name: getattr(source, name) for name in _FIELDS}


def load_sources(conn: sa.Connection, source_ids: Iterable[int]) -> dict[int, SourceRecord]:
    ids = sorted(set(source_ids))
    found: dict[int, SourceRecord] = {}
    for start in range(0, len(ids), _IDS_PER_QUERY):
        chunk = ids[start : start + _IDS_PER_QUERY]
        for row in conn.execute(sa.select(sources).where(sources.c.source_id.in_(chunk))).mappings():
            found[row["source_id"]] = source_from_row(row)
    return found


def load_source(conn: sa.Connection, source_id: int) -> SourceRecord | None:
    return load_sources(conn, [source_id]).get(source_id)


def _update_statement(columns: tuple[str, ...]) -> sa.Update:
    return (
        sa.update(sources)
        .where(sources.c.source_id == sa.bindparam("key_source_id"))
        .values({name: sa.bindparam(name) for name in (*columns, "updated_timestamp")})
    )


def save_sources(conn: sa.Connection, changes: Iterable[SourceChange]) -> int:
    """Persist many changes with one statement per kind (insert, delete, and update per set of changed
    columns); return how many. An update writes only the columns that changed, so a value another
    writer stored meanwhile in a column this change leaves alone (an availability, say) survives."""
    now = utcnow()
    inserts: list[dict[str, Any]] = []
    updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
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
            changed = tuple(name for name in _FIELDS if getattr(before, name) != getattr(after, name))
            values = {name: getattr(after, name) for name in changed}
            updates.setdefault(changed, []).append(
                {**values, "updated_timestamp": now, "key_source_id": after.source_id}
            )
    if inserts:
        conn.execute(sa.insert(sources), inserts)
    for columns, rows in updates.items():
        conn.execute(_update_statement(columns), rows)
    for start in range(0, len(deletes), _IDS_PER_QUERY):
        conn.execute(sa.delete(sources).where(sources.c.source_id.in_(deletes[start : start + _IDS_PER_QUERY])))
    return len(inserts) + sum(len(rows) for rows in updates.values()) + len(deletes)


def save_source(conn: sa.Connection, before: SourceRecord | None, after: SourceRecord | None) -> bool:
    """Persist the change from ``before`` to ``after``; return whether anything was written."""
    return save_sources(conn, [(before, after)]) > 0
