"""The ``ocp_payload_upload`` table: announcements in, outcomes out, and what was handed on.

Every write is idempotent: an announcement is inserted once per ``request_id`` (a replayed topic
changes nothing), a rejected message once per position.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from koku_dagster.infra.db.schema import ocp_payload_upload as uploads
from koku_dagster.infra.db.types import utcnow
from koku_dagster.infra.kafka import MessagePosition
from koku_dagster.infra.rejections import record_rejection
from koku_dagster.uploads.announcements import Announcement

PENDING, SUCCESS, FAILURE = "pending", "success", "failure"
MAX_REASON = 1000


@dataclass(frozen=True)
class Upload:
    """One row of ``ocp_payload_upload``."""

    id: int
    request_id: str
    org_id: str
    account: str | None
    url: str
    state: str
    reason: str | None
    manifest_uuid: str | None
    cluster_id: str | None
    provider_uuid: str | None
    months: tuple[date, ...]
    attempts: int
    received_at: datetime
    processed_at: datetime | None
    summaries_requested: bool
    validation_sent: bool

    def __repr__(self) -> str:  # the URL may carry a signed query string
        return f"Upload(request_id={self.request_id!r}, state={self.state!r}, provider_uuid={self.provider_uuid!r})"


def _as_upload(row: Any) -> Upload:
    return Upload(
        id=row["id"],
        request_id=row["request_id"],
        org_id=row["org_id"],
        account=row["account"],
        url=row["url"],
        state=row["state"],
        reason=row["reason"],
        manifest_uuid=row["manifest_uuid"],
        cluster_id=row["cluster_id"],
        provider_uuid=row["provider_uuid"],
        months=tuple(date.fromisoformat(m) for m in row["months"] or ()),
        attempts=row["attempts"],
        received_at=row["received_at"],
        processed_at=row["processed_at"],
        summaries_requested=bool(row["summaries_requested"]),
        validation_sent=bool(row["validation_sent"]),
    )


@dataclass(frozen=True)
class Rejection:
    position: MessagePosition
    reason: str


def record_intake(
    engine: sa.Engine,
    announcements: Sequence[Announcement],
    rejections: Sequence[Rejection],
    now: datetime | None = None,
) -> int:
    """Insert new announcements and rejected positions in one transaction; return the new announcements."""
    now = now or utcnow()
    inserted = 0
    with engine.begin() as conn:
        ids = {a.request_id for a in announcements}
        known = (
            set(conn.execute(sa.select(uploads.c.request_id).where(uploads.c.request_id.in_(ids))).scalars())
            if ids
            else set()
        )
        for a in announcements:
            if a.request_id in known:
                continue
            known.add(a.request_id)
            conn.execute(
                sa.insert(uploads).values(
                    request_id=a.request_id,
                    org_id=a.org_id,
                    account=a.account,
                    url=a.url,
                    topic=a.position.topic,
                    partition=a.position.partition,
                    offset=a.position.offset,
                    state=PENDING,
                    received_at=now,
                )
            )
            inserted += 1
        for r in rejections:
            record_rejection(conn, r.position, "upload.announce", r.reason[:MAX_REASON], now)
    return inserted


def load_upload(engine: sa.Engine, request_id: str) -> Upload | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(uploads).where(uploads.c.request_id == request_id)).mappings().first()
    return _as_upload(row) if row is not None else None


def start_attempt(engine: sa.Engine, request_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.update(uploads).where(uploads.c.request_id == request_id).values(attempts=uploads.c.attempts + 1)
        )


def record_outcome(
    engine: sa.Engine,
    request_id: str,
    *,
    state: str,
    reason: str | None,
    manifest_uuid: str | None = None,
    cluster_id: str | None = None,
    provider_uuid: str | None = None,
    months: Iterable[date] = (),
    now: datetime | None = None,
) -> Upload:
    """Record a processing outcome. The validation result is owed again only when the state changed;
    summaries are owed again unless the upload had already succeeded with the same months."""
    assert state in (SUCCESS, FAILURE)
    month_list = sorted({m.isoformat() for m in months})
    with engine.begin() as conn:
        before = conn.execute(sa.select(uploads).where(uploads.c.request_id == request_id)).mappings().one()
        same = before["state"] == state
        summaries_done = same and sorted(before["months"] or []) == month_list and bool(before["summaries_requested"])
        conn.execute(
            sa.update(uploads)
            .where(uploads.c.id == before["id"])
            .values(
                state=state,
                reason=reason[:MAX_REASON] if reason else None,
                manifest_uuid=manifest_uuid,
                cluster_id=cluster_id,
                provider_uuid=provider_uuid,
                months=month_list,
                processed_at=now or utcnow(),
                summaries_requested=summaries_done if state == SUCCESS else False,
                validation_sent=bool(before["validation_sent"]) and same,
            )
        )
        row = conn.execute(sa.select(uploads).where(uploads.c.id == before["id"])).mappings().one()
    return _as_upload(row)


def mark(engine: sa.Engine, request_ids: Iterable[str], column: str) -> int:
    """Set a boolean hand-over column (``run_requested``, ``summaries_requested``, ``validation_sent``)."""
    assert column in ("run_requested", "summaries_requested", "validation_sent")
    ids = sorted(set(request_ids))
    if not ids:
        return 0
    with engine.begin() as conn:
        return conn.execute(
            sa.update(uploads).where(uploads.c.request_id.in_(ids), ~uploads.c[column]).values({column: True})
        ).rowcount


def runs_due(engine: sa.Engine, limit: int) -> list[str]:
    """Pending uploads whose processing run was not handed to Dagster yet, oldest first."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(uploads.c.request_id)
                .where(uploads.c.state == PENDING, ~uploads.c.run_requested)
                .order_by(uploads.c.id)
                .limit(limit)
            ).scalars()
        )


def handed_over_pending(engine: sa.Engine, older_than: timedelta, limit: int, now: datetime | None = None) -> list[str]:
    """Uploads still pending although their run was handed over at least ``older_than`` ago
    (the run may have died without recording an outcome), oldest first."""
    cutoff = (now or utcnow()) - older_than
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(uploads.c.request_id)
                .where(uploads.c.state == PENDING, uploads.c.run_requested, uploads.c.received_at <= cutoff)
                .order_by(uploads.c.id)
                .limit(limit)
            ).scalars()
        )


def summaries_due(engine: sa.Engine, limit: int) -> list[Upload]:
    """Successful uploads whose summary runs were not handed to Dagster yet, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(uploads)
            .where(uploads.c.state == SUCCESS, ~uploads.c.summaries_requested)
            .order_by(uploads.c.id)
            .limit(limit)
        ).mappings()
        return [_as_upload(r) for r in rows]


def validations_due(engine: sa.Engine, older_than: timedelta, limit: int, now: datetime | None = None) -> list[Upload]:
    """Finished uploads whose validation result is still owed, finished at least ``older_than`` ago."""
    cutoff = (now or utcnow()) - older_than
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(uploads)
            .where(uploads.c.state != PENDING, ~uploads.c.validation_sent, uploads.c.processed_at <= cutoff)
            .order_by(uploads.c.id)
            .limit(limit)
        ).mappings()
        return [_as_upload(r) for r in rows]


def state_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(uploads.c.state, sa.func.count()).group_by(uploads.c.state)).all()
    return {PENDING: 0, SUCCESS: 0, FAILURE: 0} | {state: int(n) for state, n in rows}
