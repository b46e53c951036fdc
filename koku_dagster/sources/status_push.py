"""Send changed availability statuses to Platform Sources (PATCH only when it changed)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import sqlalchemy as sa

from koku_dagster.db.schema import sources
from koku_dagster.sources.client import SourcesClient
from koku_dagster.sources.errors import SourcesError
from koku_dagster.sources.model import SourceRecord
from koku_dagster.sources.store import load_records, record_from_row

log = logging.getLogger(__name__)


_CLEAR_PENDING = (
    sa.update(sources).where(sources.c.source_id == sa.bindparam("key_source_id")).values(status_push_pending=False)
)


@dataclass(frozen=True)
class PushSummary:
    sent: int
    skipped: int
    failed: int


def _push_one(client: SourcesClient, cost_type_id: int, record: SourceRecord) -> bool | None:
    """True sent, False nothing to send to (application gone), None failed (retried later)."""
    tenant = record.tenant
    if tenant is None or record.status is None:
        return False
    try:
        if record.application_id is not None and client.patch_availability(
            record.application_id, dict(record.status), tenant
        ):
            return True
        application = client.application(record.source_id, cost_type_id, tenant)  # unknown or moved
        if application is None:
            return False
        return client.patch_availability(application.id, dict(record.status), tenant)
    except SourcesError as exc:
        log.warning("status for source %s not sent yet: %s", record.source_id, exc)
        return None


def push_pending_statuses(
    engine: sa.Engine, client: SourcesClient, cost_type_id: int, *, limit: int, workers: int
) -> PushSummary:
    query = (
        sa.select(sources)
        .where(sources.c.status_push_pending, ~sources.c.out_of_order_delete)
        .order_by(sources.c.source_id)
        .limit(limit)
    )
    with engine.connect() as conn:
        records = [record_from_row(row) for row in conn.execute(query).mappings()]
    if not records:
        return PushSummary(0, 0, 0)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(lambda r: _push_one(client, cost_type_id, r), records))
    done = [r for r, ok in zip(records, results, strict=True) if ok is not None]
    with engine.begin() as conn:
        current = load_records(conn, [r.source_id for r in done])
        # Clear the flag only if the status was not changed again meanwhile.
        cleared = [
            {"key_source_id": record.source_id}
            for record in done
            if (now := current.get(record.source_id)) is not None
            and now.status_push_pending
            and now.status == record.status
        ]
        if cleared:
            conn.execute(_CLEAR_PENDING, cleared)  # one executemany
    sent = sum(1 for ok in results if ok)
    skipped = sum(1 for ok in results if ok is False)
    return PushSummary(sent, skipped, len(results) - sent - skipped)
