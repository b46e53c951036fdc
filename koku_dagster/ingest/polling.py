"""Koku's polling rules: which providers are due, and which billing months to ingest."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from koku_dagster.infra.db.schema import provider
from koku_dagster.providers import POLLED_TYPES

#: Hourly polls spread the providers over the day: each hour takes ceil(n / POLLING_COUNT).
POLLING_COUNT = 21
PROCESSING_WAIT = timedelta(days=3)
STEADY_STATE_MONTHS = 2


@dataclass(frozen=True)
class DueProvider:
    uuid: str
    type: str
    setup_complete: bool


def currently_processing(
    polling_timestamp: datetime | None,
    data_updated_timestamp: datetime | None,
    created_timestamp: datetime,
    now: datetime,
    wait: timedelta = PROCESSING_WAIT,
) -> bool:
    """True while an earlier poll's ingestion may still be running (so do not poll again)."""
    if polling_timestamp is None:
        return False
    if data_updated_timestamp is not None:
        return polling_timestamp > data_updated_timestamp and data_updated_timestamp >= now - wait
    return not (created_timestamp > now - timedelta(days=1) or created_timestamp < now - wait)


def billing_months(today: date, count: int) -> list[date]:
    """``count`` month starts, current month first."""
    months: list[date] = []
    month = today.replace(day=1)
    for _ in range(max(1, count)):
        months.append(month)
        month = (month - timedelta(days=1)).replace(day=1)
    return months


def months_to_ingest(
    setup_complete: bool, today: date, initial_months: int, retain_months: int | None = None
) -> list[date]:
    """Koku's months to ingest, never older than the ``retain_months`` kept (those are not partitions)."""
    count = STEADY_STATE_MONTHS if setup_complete else initial_months
    return billing_months(today, min(count, retain_months or count))


def existing_providers(engine: sa.Engine, provider_uuids: Iterable[str]) -> set[str]:
    """Which of these providers exist."""
    with engine.connect() as conn:
        return set(conn.execute(sa.select(provider.c.uuid).where(provider.c.uuid.in_(list(provider_uuids)))).scalars())


def take_polling_batch(
    engine: sa.Engine,
    now: datetime,
    interval_seconds: int,
    types: Iterable[str] = POLLED_TYPES,
    *,
    skip: Iterable[str] = (),
) -> list[DueProvider]:
    """The providers due for polling now. Nothing is written: each poll is recorded by :func:`record_poll`
    when its run starts, so a failed schedule tick loses no poll.

    Active, unpaused providers of the polled types (never OpenShift, whose data is pushed) whose last
    reachability check succeeded and that were not polled within the interval are eligible, never-polled
    first, then oldest poll first. Those still processing, and those in ``skip`` (a poll of theirs is
    queued or running), are left out; of the rest at most ceil(n / 21) are taken when there are many.
    """
    base = sa.and_(provider.c.active, ~provider.c.paused, provider.c.reachable, provider.c.type.in_(list(types)))
    cutoff = now - timedelta(seconds=interval_seconds)
    query = (
        sa.select(provider)
        .where(base, sa.or_(provider.c.polling_timestamp.is_(None), provider.c.polling_timestamp < cutoff))
        .order_by(provider.c.polling_timestamp.is_not(None), provider.c.polling_timestamp, provider.c.uuid)
    )
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(provider).where(base)).scalar() or 0
        rows = conn.execute(query).mappings().all()
    skipped = set(skip)
    due = [
        DueProvider(row["uuid"], row["type"], bool(row["setup_complete"]))
        for row in rows
        if row["uuid"] not in skipped
        and not currently_processing(
            row["polling_timestamp"], row["data_updated_timestamp"], row["created_timestamp"], now
        )
    ]
    limit = math.ceil(total / POLLING_COUNT)
    return due[:limit] if limit > 1 else due


def record_poll(engine: sa.Engine, provider_uuid: str, polled_at: datetime) -> bool:
    """Record the poll of ``polled_at`` (its run started). Idempotent: the poll's other runs (one per
    month), and a retried run, find it recorded; an older poll never overwrites a newer one."""
    stamp = provider.c.polling_timestamp
    query = (
        sa.update(provider)
        .where(provider.c.uuid == provider_uuid, sa.or_(stamp.is_(None), stamp < polled_at))
        .values(polling_timestamp=polled_at)
    )
    with engine.begin() as conn:
        return conn.execute(query).rowcount == 1
