"""Events parked for a retry: only their positions, in ``sources_parked_message``.

An event whose Platform Sources calls fail is parked (and so is every later event of the same
source, to keep its order); the Kafka offset moves on, so no other source waits behind it. Parked
events are read again from Kafka by position and retried with capped back-off until they apply;
they are never given up while Kafka still holds them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from koku_dagster.infra.db.schema import sources_parked_message as parked
from koku_dagster.infra.kafka import MessagePosition
from koku_dagster.sources.retry import Backoff

_IDS_PER_QUERY = 500


@dataclass(frozen=True)
class ParkedEvent:
    position: MessagePosition
    source_id: int
    event_type: str | None
    error: str


def _key(position: MessagePosition) -> sa.ColumnElement[bool]:
    return sa.and_(
        parked.c.topic == position.topic, parked.c.partition == position.partition, parked.c.offset == position.offset
    )


def parked_sources(conn: sa.Connection, source_ids: Iterable[int]) -> set[int]:
    """Those of ``source_ids`` that have parked events (their new events must queue behind them)."""
    ids = sorted(set(source_ids))
    found: set[int] = set()
    for start in range(0, len(ids), _IDS_PER_QUERY):
        query = sa.select(parked.c.source_id).where(parked.c.source_id.in_(ids[start : start + _IDS_PER_QUERY]))
        found.update(conn.execute(query.distinct()).scalars())
    return found


def park(conn: sa.Connection, events: list[ParkedEvent], now: datetime, backoff: Backoff) -> None:
    """Park ``events`` (a position parked before stays as it is: replays change nothing)."""
    for event in events:
        if conn.execute(sa.select(parked.c.offset).where(_key(event.position))).first() is None:
            conn.execute(
                sa.insert(parked).values(
                    topic=event.position.topic,
                    partition=event.position.partition,
                    offset=event.position.offset,
                    source_id=event.source_id,
                    event_type=(event.event_type or "")[:200] or None,
                    attempts=1,
                    next_attempt_at=now + backoff.delay(1),
                    last_error=event.error[:500],
                    parked_at=now,
                )
            )


def unpark(conn: sa.Connection, positions: Iterable[MessagePosition]) -> None:
    for position in positions:
        conn.execute(sa.delete(parked).where(_key(position)))


def defer(conn: sa.Connection, source_id: int, error: str, now: datetime, backoff: Backoff) -> None:
    """One more failed attempt for every parked event of ``source_id``: the next one after the back-off."""
    attempts = conn.execute(sa.select(sa.func.max(parked.c.attempts)).where(parked.c.source_id == source_id)).scalar()
    tries = int(attempts or 0) + 1
    conn.execute(
        sa.update(parked)
        .where(parked.c.source_id == source_id)
        .values(attempts=tries, next_attempt_at=now + backoff.delay(tries), last_error=error[:500])
    )


def due_parked(conn: sa.Connection, topic: str, now: datetime, limit: int) -> list[ParkedEvent]:
    """The parked events of the sources whose retry is due, per source in offset order (about ``limit``)."""
    due = (
        sa.select(parked.c.source_id)
        .where(parked.c.topic == topic)
        .group_by(parked.c.source_id)
        .having(sa.func.min(parked.c.next_attempt_at) <= now)
        .order_by(sa.func.min(parked.c.parked_at), parked.c.source_id)
        .limit(limit)
    )
    source_ids = list(conn.execute(due).scalars())
    rows = conn.execute(
        sa.select(parked)
        .where(parked.c.topic == topic, parked.c.source_id.in_(source_ids))
        .order_by(parked.c.source_id, parked.c.partition, parked.c.offset)
        .limit(limit)
    ).mappings()
    return [
        ParkedEvent(
            MessagePosition(r["topic"], r["partition"], r["offset"]), r["source_id"], r["event_type"], r["last_error"]
        )
        for r in rows
    ]


def waiting(conn: sa.Connection, topic: str) -> dict[tuple[str, int], tuple[int, str]]:
    """Parked events per partition: the first offset and its last error (what waits for a retry)."""
    firsts = conn.execute(
        sa.select(parked.c.partition, sa.func.min(parked.c.offset))
        .where(parked.c.topic == topic)
        .group_by(parked.c.partition)
    ).all()
    found: dict[tuple[str, int], tuple[int, str]] = {}
    for partition, offset in firsts:
        error = conn.execute(sa.select(parked.c.last_error).where(_key(MessagePosition(topic, partition, offset))))
        found[(topic, partition)] = (int(offset), error.scalar() or "")
    return found
