"""Apply a batch of Platform Sources messages: parse, group by source, fetch, commit once.

Per-source order is kept (a source's events are applied in offset order by one worker);
independent sources are fetched concurrently. The effects of the whole batch (source rows,
rejected messages, retry state, consumer high-water marks) are committed in one transaction;
the caller commits Kafka offsets only after that, to the positions this module returns.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from koku_dagster.infra.db.schema import consumer_progress, message_retry
from koku_dagster.infra.kafka import MessagePosition, RawMessage
from koku_dagster.infra.rejections import record_rejection
from koku_dagster.sources.errors import PoisonMessage, SourceNotFound, SourcesApiError
from koku_dagster.sources.events import SourceEvent, event_type_of, parse_message
from koku_dagster.sources.model import SourceRecord, Tenant
from koku_dagster.sources.platform import PlatformView
from koku_dagster.sources.processor import apply_event, flag_provider_update
from koku_dagster.sources.provider_operations import stale_providers
from koku_dagster.sources.source_rows import SourceChange, load_sources, save_sources

log = logging.getLogger(__name__)

#: A message whose source keeps failing (while Platform Sources itself answers) is given up
#: after this many attempts and recorded as rejected; the stream then moves on.
MAX_MESSAGE_ATTEMPTS = 6
_RETRY_BASE_SECONDS = 5.0
#: Sources one worker task applies in a row.
_TASK_SIZE = 8

TopicPartition = tuple[str, int]


@dataclass(frozen=True)
class Rejection:
    position: MessagePosition
    event_type: str | None
    reason: str


@dataclass
class BatchResult:
    read: int = 0
    applied: int = 0
    ignored: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    sources_changed: int = 0
    #: Next offset to commit, per partition (everything before it is durable).
    commit_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    #: First message to retry, per partition, with its reason.
    retrying: dict[TopicPartition, tuple[int, str]] = field(default_factory=dict)
    api_calls: int = 0

    def merged(self, later: BatchResult) -> BatchResult:
        """This batch followed by ``later`` (offsets and retries as of the later one)."""
        return BatchResult(
            read=self.read + later.read,
            applied=self.applied + later.applied,
            ignored=self.ignored + later.ignored,
            rejected=self.rejected + later.rejected,
            sources_changed=self.sources_changed + later.sources_changed,
            commit_offsets={**self.commit_offsets, **later.commit_offsets},
            retrying={**self.retrying, **later.retrying},
            api_calls=self.api_calls + later.api_calls,
        )


@dataclass
class _GroupResult:
    source_id: int
    record: SourceRecord | None
    applied: int = 0
    ignored: int = 0
    failed_at: MessagePosition | None = None
    error: str | None = None


def _process_group(
    source_id: int,
    record: SourceRecord | None,
    events: list[SourceEvent],
    platform: PlatformView,
    high_water: dict[TopicPartition, int],
) -> _GroupResult:
    result = _GroupResult(source_id, record)
    for event in events:
        pos = event.position
        replay = pos.offset <= high_water.get((pos.topic, pos.partition), -1)
        try:
            outcome = apply_event(result.record, event, platform, replay=replay)
        except SourceNotFound:
            log.info("source %s no longer exists; %s skipped", source_id, event.event_type)
            result.applied += 1
            continue
        except SourcesApiError as exc:
            result.failed_at, result.error = pos, str(exc)
            break
        result.record = outcome.record
        if outcome.relevant:
            result.applied += 1
            log.info("%s for source %s: %s", event.event_type, source_id, outcome.note)
        else:
            result.ignored += 1
    return result


def retry_delay(attempts: int) -> timedelta:
    return timedelta(seconds=min(300.0, _RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1)))


def blocked_partitions(engine: sa.Engine, now: datetime) -> dict[TopicPartition, int]:
    """Partitions whose head message waits for its retry time: partition -> offset."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(message_retry).where(message_retry.c.next_attempt_at > now)).mappings()
        return {(r["topic"], r["partition"]): r["offset"] for r in rows}


def process_batch(
    engine: sa.Engine,
    group_id: str,
    messages: list[RawMessage],
    platform: PlatformView,
    now: datetime,
    *,
    workers: int = 8,
) -> BatchResult:
    """Apply ``messages`` (in offset order per partition) and commit their effects."""
    result = BatchResult(read=len(messages))
    if not messages:
        return result
    groups = _group_events(messages, result)
    with engine.connect() as conn:
        before = load_sources(conn, groups)
        high_water = {
            (r["topic"], r["partition"]): r["high_water"]
            for r in conn.execute(
                sa.select(consumer_progress).where(consumer_progress.c.group_id == group_id)
            ).mappings()
        }
        retries = {(r["topic"], r["partition"]): dict(r) for r in conn.execute(sa.select(message_retry)).mappings()}
    calls_before = platform.calls
    group_results = _apply_groups(groups, before, platform, high_water, workers)
    result.api_calls = platform.calls - calls_before
    for g in group_results:
        result.applied += g.applied
        result.ignored += g.ignored
    gave_up = _schedule_retries(_first_failures(group_results), retries, messages, now, result)
    partitions = {(m.position.topic, m.position.partition) for m in messages}
    _set_commit_offsets(partitions, messages, gave_up, result)
    applied_through = _applied_through(groups, group_results, messages, gave_up)
    with engine.begin() as conn:
        changes = _queue_stale_providers(conn, [(before.get(g.source_id), g.record) for g in group_results])
        result.sources_changed = save_sources(conn, changes)
        for rejection in result.rejected:
            record_rejection(conn, rejection.position, rejection.event_type, rejection.reason, now)
        for tp in partitions:
            conn.execute(
                sa.delete(message_retry).where(message_retry.c.topic == tp[0], message_retry.c.partition == tp[1])
            )
            if tp in result.retrying:
                conn.execute(sa.insert(message_retry).values(**retries[tp]))
            _raise_high_water(conn, group_id, tp, applied_through.get(tp, -1))
    return result


def _group_events(messages: list[RawMessage], result: BatchResult) -> dict[int, list[SourceEvent]]:
    """The handled events by source, in offset order; unreadable ones are added to ``result.rejected``."""
    groups: dict[int, list[SourceEvent]] = defaultdict(list)
    for msg in messages:
        try:
            event = parse_message(msg.position, msg.headers, msg.value)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, PoisonMessage) else f"unreadable message ({type(exc).__name__})"
            result.rejected.append(Rejection(msg.position, event_type_of(msg.headers), reason))
            pos = msg.position
            log.warning("rejected message %s[%s]@%s: %s", pos.topic, pos.partition, pos.offset, reason)
            continue
        if event is None:
            result.ignored += 1
            continue
        groups[event.source_id].append(event)
    return groups


def _apply_groups(
    groups: dict[int, list[SourceEvent]],
    before: dict[int, SourceRecord],
    platform: PlatformView,
    high_water: dict[TopicPartition, int],
    workers: int,
) -> list[_GroupResult]:
    """Each source's events applied in order; sources in parallel, after a bulk prefetch per tenant."""
    by_tenant: dict[Tenant, list[int]] = defaultdict(list)
    for source_id, events in groups.items():
        by_tenant[events[0].tenant].append(source_id)
    platform.prefetch(dict(by_tenant), workers=workers)
    # Sources are handed out in tasks of a few (fewer tasks than sources); a source's events
    # stay together, in offset order.
    items = list(groups.items())
    tasks = [items[i : i + _TASK_SIZE] for i in range(0, len(items), _TASK_SIZE)]
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(tasks)))) as pool:
        done = pool.map(
            lambda task: [_process_group(sid, before.get(sid), evs, platform, high_water) for sid, evs in task], tasks
        )
        return [g for task_results in done for g in task_results]


def _first_failures(group_results: list[_GroupResult]) -> dict[TopicPartition, tuple[int, str]]:
    """The first failed message per partition (offset, error): where the partition resumes."""
    first: dict[TopicPartition, tuple[int, str]] = {}
    for g in group_results:
        if g.failed_at is not None:
            tp = (g.failed_at.topic, g.failed_at.partition)
            if tp not in first or g.failed_at.offset < first[tp][0]:
                first[tp] = (g.failed_at.offset, g.error or "error")
    return first


def _schedule_retries(
    first_failure: dict[TopicPartition, tuple[int, str]],
    retries: dict[TopicPartition, dict[str, Any]],
    messages: list[RawMessage],
    now: datetime,
    result: BatchResult,
) -> dict[TopicPartition, int]:
    """Schedule a retry of each failed message (in ``retries`` and ``result.retrying``), or give it up
    (in ``result.rejected``) after :data:`MAX_MESSAGE_ATTEMPTS`; return the given-up offsets."""
    gave_up: dict[TopicPartition, int] = {}
    for tp, (offset, error) in first_failure.items():
        prior = retries.get(tp)
        attempts = (prior["attempts"] + 1) if prior and prior["offset"] == offset else 1
        if attempts >= MAX_MESSAGE_ATTEMPTS:
            failed_msg = next(
                m for m in messages if (m.position.topic, m.position.partition) == tp and m.position.offset == offset
            )
            reason = f"gave up after {attempts} attempts: {error}"
            result.rejected.append(Rejection(failed_msg.position, event_type_of(failed_msg.headers), reason))
            log.error("giving up on %s[%s]@%s after %s attempts: %s", tp[0], tp[1], offset, attempts, error)
            gave_up[tp] = offset
        else:
            result.retrying[tp] = (offset, error)
            retries[tp] = {
                "topic": tp[0],
                "partition": tp[1],
                "offset": offset,
                "attempts": attempts,
                "next_attempt_at": now + retry_delay(attempts),
                "last_error": error,
            }
            log.warning("will retry %s[%s]@%s (attempt %s): %s", tp[0], tp[1], offset, attempts, error)
    return gave_up


def _set_commit_offsets(
    partitions: set[TopicPartition], messages: list[RawMessage], gave_up: dict[TopicPartition, int], result: BatchResult
) -> None:
    """Where each partition may resume: the message to retry, else after the last one read."""
    for tp in partitions:
        if tp in result.retrying:
            result.commit_offsets[tp] = result.retrying[tp][0]
        elif tp in gave_up:
            result.commit_offsets[tp] = gave_up[tp] + 1  # skip only the given-up message
        else:
            last = max(m.position.offset for m in messages if (m.position.topic, m.position.partition) == tp)
            result.commit_offsets[tp] = last + 1


def _applied_through(
    groups: dict[int, list[SourceEvent]],
    group_results: list[_GroupResult],
    messages: list[RawMessage],
    gave_up: dict[TopicPartition, int],
) -> dict[TopicPartition, int]:
    """Highest offset per partition whose effects this batch commits (failed tails excluded)."""
    unapplied = {
        (e.position.topic, e.position.partition, e.position.offset)
        for g in group_results
        if g.failed_at is not None
        for e in groups[g.source_id]
        if e.position.offset > g.failed_at.offset
        or (e.position.offset == g.failed_at.offset and (e.position.topic, e.position.partition) not in gave_up)
    }
    through: dict[TopicPartition, int] = {}
    for m in messages:
        tp = (m.position.topic, m.position.partition)
        if (tp[0], tp[1], m.position.offset) not in unapplied:
            through[tp] = max(through.get(tp, -1), m.position.offset)
    return through


def _queue_stale_providers(conn: sa.Connection, changes: list[SourceChange]) -> list[SourceChange]:
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


def _raise_high_water(conn: sa.Connection, group_id: str, tp: TopicPartition, offset: int) -> None:
    if offset < 0:
        return
    key = (
        consumer_progress.c.group_id == group_id,
        consumer_progress.c.topic == tp[0],
        consumer_progress.c.partition == tp[1],
    )
    current = conn.execute(sa.select(consumer_progress.c.high_water).where(*key)).scalar()
    if current is None:
        conn.execute(
            sa.insert(consumer_progress).values(group_id=group_id, topic=tp[0], partition=tp[1], high_water=offset)
        )
    elif offset > current:
        conn.execute(sa.update(consumer_progress).where(*key).values(high_water=offset))
