"""Send changed availability statuses to Platform Sources (PATCH only when it changed)."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from koku_dagster.infra.db.schema import sources
from koku_dagster.sources.client import SourcesClient
from koku_dagster.sources.errors import SourcesError
from koku_dagster.sources.model import Tenant

log = logging.getLogger(__name__)

#: Statuses one worker task sends in a row (fewer tasks to hand out than statuses).
_TASK_SIZE = 16


@dataclass(frozen=True)
class PushSummary:
    sent: int
    skipped: int
    failed: int


@dataclass(frozen=True)
class _Pending:
    """What sending one source's status needs (read from its ``api_sources`` row)."""

    source_id: int
    tenant: Tenant | None
    status: dict[str, Any] | None
    application_id: int | None


def _push_one(client: SourcesClient, cost_type_id: int, pending: _Pending, deadline: float | None) -> bool | None:
    """True sent, False nothing to send to (application gone), None failed or out of time (retried later)."""
    tenant = pending.tenant
    if tenant is None or pending.status is None:
        return False
    if deadline is not None and time.monotonic() > deadline:
        return None
    try:
        if pending.application_id is not None and client.patch_availability(
            pending.application_id, dict(pending.status), tenant
        ):
            return True
        application = client.application(pending.source_id, cost_type_id, tenant)  # unknown or moved
        if application is None:
            return False
        return client.patch_availability(application.id, dict(pending.status), tenant)
    except SourcesError as exc:
        log.warning("status for source %s not sent yet: %s", pending.source_id, exc)
        return None


def _pending(conn: sa.Connection, limit: int) -> list[_Pending]:
    query = (
        sa.select(
            sources.c.source_id,
            sources.c.auth_header,
            sources.c.org_id,
            sources.c.account_id,
            sources.c.status,
            sources.c.application_id,
        )
        .where(sources.c.status_push_pending, ~sources.c.out_of_order_delete)
        .order_by(sources.c.source_id)
        .limit(limit)
    )
    return [
        _Pending(
            source_id,
            Tenant(auth_header, org_id, account_id) if auth_header and org_id else None,
            status or None,
            application_id,
        )
        for source_id, auth_header, org_id, account_id, status, application_id in conn.execute(query)
    ]


def push_pending_statuses(
    engine: sa.Engine,
    client: SourcesClient,
    cost_type_id: int,
    *,
    limit: int,
    workers: int,
    deadline: float | None = None,
) -> PushSummary:
    """Send the statuses waiting to be sent (at most ``limit``); none is started after ``deadline`` (monotonic)."""
    with engine.connect() as conn:
        waiting = _pending(conn, limit)
    if not waiting:
        return PushSummary(0, 0, 0)
    tasks = [waiting[i : i + _TASK_SIZE] for i in range(0, len(waiting), _TASK_SIZE)]
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(tasks)))) as pool:
        done_tasks = pool.map(lambda task: [_push_one(client, cost_type_id, r, deadline) for r in task], tasks)
        results = [ok for task_results in done_tasks for ok in task_results]
    done = {w.source_id: w.status for w, ok in zip(waiting, results, strict=True) if ok is not None}
    with engine.begin() as conn:
        # Clear the flag only if the status was not changed again meanwhile.
        ids = sorted(done)
        for start in range(0, len(ids), 500):
            query = sa.select(sources.c.source_id, sources.c.status_push_pending, sources.c.status).where(
                sources.c.source_id.in_(ids[start : start + 500])
            )
            cleared = [
                source_id
                for source_id, pending, status in conn.execute(query)
                if pending and (status or None) == done[source_id]
            ]
            if cleared:
                conn.execute(
                    sa.update(sources).where(sources.c.source_id.in_(cleared)).values(status_push_pending=False)
                )
    sent = sum(1 for ok in results if ok)
    skipped = sum(1 for ok in results if ok is False)
    return PushSummary(sent, skipped, len(results) - sent - skipped)
