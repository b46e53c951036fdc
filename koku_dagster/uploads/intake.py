"""Read a bounded batch of announcements and make it durable, then commit the Kafka offsets.

Order: read (:class:`~koku_dagster.infra.kafka.BatchConsumer`) -> parse -> one transaction inserting
new uploads and rejected messages -> commit offsets. A crash before the offset commit replays the
batch, which changes nothing (inserts are keyed by ``request_id`` and message position).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import sqlalchemy as sa

from koku_dagster.infra.kafka import BatchConsumer, RawMessage
from koku_dagster.infra.settings import KafkaSecurity
from koku_dagster.uploads.announcements import Announcement, BadAnnouncement, parse_announcement, service_of
from koku_dagster.uploads.upload_records import Rejection, record_intake

log = logging.getLogger(__name__)

UPLOAD_GROUP = "hccm-group"


@dataclass(frozen=True)
class IntakeLimits:
    max_messages: int = 1000
    #: Well under Dagster's sensor timeout (60 s), leaving time for the rest of the tick.
    read_budget_seconds: float = 5.0


@dataclass
class IntakeReport:
    read: int = 0
    announced: int = 0
    new: int = 0
    #: Messages for other services, by ``service`` header.
    ignored: Counter[str] = field(default_factory=Counter)
    rejected: list[Rejection] = field(default_factory=list)
    start_offsets: dict[int, int] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)

    @property
    def duplicates(self) -> int:
        """Announcements whose request id was already recorded (replays)."""
        return self.announced - self.new


def sort_messages(messages: list[RawMessage]) -> tuple[list[Announcement], list[Rejection], Counter[str]]:
    """Announcements, rejections and ignored services of a batch."""
    announcements: list[Announcement] = []
    rejections: list[Rejection] = []
    ignored: Counter[str] = Counter()
    for msg in messages:
        try:
            announcement = parse_announcement(msg.position, msg.headers, msg.value)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, BadAnnouncement) else f"unreadable message ({type(exc).__name__})"
            pos = msg.position
            log.warning("rejected upload announcement %s[%s]@%s: %s", pos.topic, pos.partition, pos.offset, reason)
            rejections.append(Rejection(pos, reason))
            continue
        if announcement is None:
            ignored[service_of(msg.headers) or "(none)"] += 1
        else:
            announcements.append(announcement)
    return announcements, rejections, ignored


def take_announcements(
    engine: sa.Engine,
    bootstrap: str,
    topic: str,
    *,
    group_id: str = UPLOAD_GROUP,
    limits: IntakeLimits = IntakeLimits(),
    security: KafkaSecurity | None = None,
) -> IntakeReport:
    """One bounded read of the upload topic, recorded and committed. Kafka errors propagate."""
    report = IntakeReport()
    with BatchConsumer(bootstrap, topic, group_id, security) as consumer:
        messages, report.start_offsets = consumer.read(
            max_messages=limits.max_messages, budget_seconds=limits.read_budget_seconds
        )
        report.read = len(messages)
        if not messages:
            return report
        announcements, report.rejected, report.ignored = sort_messages(messages)
        report.announced = len(announcements)
        report.new = record_intake(engine, announcements, report.rejected)
        for m in messages:
            p = m.position.partition
            report.committed[p] = max(report.committed.get(p, 0), m.position.offset + 1)
        consumer.commit(report.committed)
    return report
