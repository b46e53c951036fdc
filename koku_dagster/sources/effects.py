"""Commit a batch's source changes so that one source the database refuses never blocks the others.

The changes and the batch's bookkeeping (rejections, parked events, consumer progress) are written
in one transaction. If the database refuses a value (a duplicate uid, a number or text the column
cannot hold), the changes are written again in chunks, a failing chunk source by source; a refused
source keeps its previous row (or a minimal one), marked unavailable with a fixed reason, and its
events are recorded as rejected. Then the bookkeeping commits. A lost connection is not a refusal:
it propagates and nothing further is written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from koku_dagster.providers import availability as status_mod
from koku_dagster.sources.model import SourceRecord
from koku_dagster.sources.processor import flag_provider_update
from koku_dagster.sources.provider_operations import stale_providers
from koku_dagster.sources.source_rows import SourceChange, save_sources

log = logging.getLogger(__name__)

#: What Platform Sources is told when a source's data could not be stored.
NOT_STORED_MESSAGE = "Cost management could not store this source's data from Platform Sources."
_CHUNK = 100

Writer = Callable[[sa.Connection], None]


@dataclass
class WriteOutcome:
    sources_changed: int = 0
    #: Sources whose data the database refused (recorded unavailable instead).
    refused: list[int] = field(default_factory=list)


def is_refusal(exc: Exception) -> bool:
    """A value the database will never take (as opposed to a lost connection or a timeout)."""
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
        return False
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return False
    return isinstance(exc, sa.exc.StatementError)


def write_changes(
    engine: sa.Engine,
    changes: list[SourceChange],
    bookkeeping: Writer,
    fence: Writer,
    on_refused: Callable[[list[int]], None],
) -> WriteOutcome:
    """Write ``changes`` and run ``bookkeeping`` (and ``fence``) in one transaction, or isolate refusals
    (``on_refused`` learns the refused sources before ``bookkeeping`` runs)."""
    outcome = WriteOutcome()
    try:
        with engine.begin() as conn:
            fence(conn)
            outcome.sources_changed = save_sources(conn, queue_stale_providers(conn, changes))
            bookkeeping(conn)
        return outcome
    except sa.exc.StatementError as exc:
        if not is_refusal(exc):
            raise
        log.warning("the database refused a batch's source changes (%s); writing them source by source", type(exc))
    for start in range(0, len(changes), _CHUNK):
        _write_chunk(engine, changes[start : start + _CHUNK], outcome, fence)
    on_refused(outcome.refused)
    with engine.begin() as conn:
        fence(conn)
        bookkeeping(conn)
    return outcome


def _write_chunk(engine: sa.Engine, chunk: list[SourceChange], outcome: WriteOutcome, fence: Writer) -> None:
    """Write ``chunk`` in one transaction; if refused, each source on its own (a refused one quarantined)."""
    try:
        _write(engine, chunk, fence, outcome)
        return
    except sa.exc.StatementError as exc:
        if not is_refusal(exc):
            raise
    if len(chunk) == 1:
        _quarantine(engine, chunk[0], fence, outcome)
        return
    for change in chunk:
        _write_chunk(engine, [change], outcome, fence)


def _write(engine: sa.Engine, changes: list[SourceChange], fence: Writer, outcome: WriteOutcome) -> None:
    with engine.begin() as conn:
        fence(conn)
        outcome.sources_changed += save_sources(conn, queue_stale_providers(conn, changes))


def _quarantine(engine: sa.Engine, change: SourceChange, fence: Writer, outcome: WriteOutcome) -> None:
    """Keep the source as it was (or a minimal row), marked unavailable with :data:`NOT_STORED_MESSAGE`."""
    before, after = change
    current = after or before
    assert current is not None
    outcome.refused.append(current.source_id)
    log.warning("the database refused the data of source %s; it is recorded as unavailable", current.source_id)
    kept = before.copy() if before is not None else _minimal(current)
    if kept is None:
        return
    status = status_mod.build_status(NOT_STORED_MESSAGE)
    if kept.status != status:
        kept.status, kept.status_push_pending = status, True
    try:
        with engine.begin() as conn:
            fence(conn)
            save_sources(conn, [(before, kept)])
    except sa.exc.StatementError as exc:
        if not is_refusal(exc):
            raise
        log.error("source %s could not be recorded at all; its events are recorded as rejected", current.source_id)


def _minimal(record: SourceRecord) -> SourceRecord | None:
    """A new source's row with only what the event itself told (its ids and tenant), or None for a tombstone."""
    if record.out_of_order_delete:
        return None
    return SourceRecord(
        source_id=record.source_id,
        offset=record.offset,
        auth_header=record.auth_header,
        account_id=record.account_id,
        org_id=record.org_id,
        application_id=record.application_id,
    )


def queue_stale_providers(conn: sa.Connection, changes: list[SourceChange]) -> list[SourceChange]:
    """``changes`` with an update queued for every touched source whose provider differs from what the
    source now says it is built from, so the outcome does not depend on the order events came in."""
    stale = set(stale_providers(conn, (after for _, after in changes if after is not None)))
    if not stale:
        return changes
    queued: list[SourceChange] = []
    for before, after in changes:
        if after is not None and after.source_id in stale:
            after = after.copy()
            flag_provider_update(after)
            log.info("provider of source %s differs from the source: update queued", after.source_id)
        queued.append((before, after))
    return queued
