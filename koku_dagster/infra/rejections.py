"""Poison messages of any consumed topic, recorded once per position in ``sources_rejected_message``."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from koku_dagster.infra.db.schema import rejected_message
from koku_dagster.infra.kafka import MessagePosition


def record_rejection(
    conn: sa.Connection, position: MessagePosition, event_type: str | None, reason: str, now: datetime
) -> None:
    """Record a rejected message unless its position was recorded before (replays change nothing)."""
    exists = conn.execute(
        sa.select(rejected_message.c.id).where(
            rejected_message.c.topic == position.topic,
            rejected_message.c.partition == position.partition,
            rejected_message.c.offset == position.offset,
        )
    ).first()
    if exists is None:
        conn.execute(
            sa.insert(rejected_message).values(
                topic=position.topic,
                partition=position.partition,
                offset=position.offset,
                event_type=(event_type or "")[:200] or None,
                reason=reason[:1000],
                received_at=now,
            )
        )
