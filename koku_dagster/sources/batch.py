"""Apply a batch of Platform Sources messages: parse, group by source, fetch, commit once.

Per-source order is kept (a source's events are applied in offset order by one worker);
independent sources are fetched concurrently. Each source and each message is isolated:

- an unreadable message, or one whose data is refused, is recorded in ``sources_rejected_message``;
- an event whose Platform Sources calls fail is parked (:mod:`koku_dagster.sources.parking`) with
  the later events of its source, and retried from there: its offset is committed all the same;
- a source the database refuses is recorded unavailable (:mod:`koku_dagster.sources.effects`);
- events not started when the apply deadline passes are left for the next pass (offsets stop there).

The effects (source rows, rejections, parked events, consumer high-water marks) commit together;
the caller commits Kafka offsets only after that, to the positions this module returns.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from koku_dagster.infra.db.schema import consumer_progress
from koku_dagster.infra.kafka import MessagePosition, RawMessage
from koku_dagster.infra.rejections import record_rejection
from koku_dagster.sources import parking
from koku_dagster.sources.effects import Writer, write_changes
from koku_dagster.sources.errors import PoisonMessage, SourceDataError, SourceNotFound, SourcesApiError
from koku_dagster.sources.events import SourceEvent, event_type_of, parse_message
from koku_dagster.sources.model import SourceRecord, Tenant
from koku_dagster.sources.platform import PlatformView
from koku_dagster.sources.processor import apply_event, set_unavailable
from koku_dagster.sources.retry import Backoff
from koku_dagster.sources.source_rows import load_sources

log = logging.getLogger(__name__)

#: Sources one worker task applies in a row.
_TASK_SIZE = 8
_NOT_STORED_REASON = "the source's data could not be stored"

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
    #: Events parked by this batch (Platform Sources calls failed, or an earlier event of the source waits).
    parked: int = 0
    #: Parked events applied (or recorded) by this pass.
    unparked: int = 0
    #: Events left for the next pass because the apply deadline passed.
    carried: int = 0
    #: Sources whose data the database refused (recorded unavailable).
    refused_sources: list[int] = field(default_factory=list)
    #: Parked events still waiting after this pass, per partition: the first offset and its last error.
    retrying: dict[TopicPartition, tuple[int, str]] = field(default_factory=dict)
    api_calls: int = 0

    def merged(self, later: BatchResult) -> BatchResult:
        """This batch followed by ``later`` (offsets and waiting events as of the later one)."""
        return BatchResult(
            read=self.read + later.read,
            applied=self.applied + later.applied,
            ignored=self.ignored + later.ignored,
            rejected=self.rejected + later.rejected,
            sources_changed=self.sources_changed + later.sources_changed,
            commit_offsets={**self.commit_offsets, **later.commit_offsets},
            parked=self.parked + later.parked,
            unparked=self.unparked + later.unparked,
            carried=self.carried + later.carried,
            refused_sources=self.refused_sources + later.refused_sources,
            retrying=later.retrying or self.retrying,
            api_calls=self.api_calls + later.api_calls,
        )


@dataclass
class _GroupResult:
    source_id: int
    record: SourceRecord | None
    events: list[SourceEvent]
    applied: int = 0
    ignored: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    #: Index of the first event not applied, and why: "api" (park it and the rest) or "deadline" (carry).
    stopped_at: int | None = None
    stop: str = ""
    error: str = ""

    @property
    def done(self) -> list[SourceEvent]:
        return self.events if self.stopped_at is None else self.events[: self.stopped_at]

    @property
    def rest(self) -> list[SourceEvent]:
        return [] if self.stopped_at is None else self.events[self.stopped_at :]


@dataclass(frozen=True)
class BatchContext:
    """What applying and committing a batch needs besides its messages."""

    engine: sa.Engine
    group_id: str
    platform: PlatformView
    now: datetime
    deadline: float
    backoff: Backoff
    fence: Writer
    workers: int = 8


def _process_group(
    source_id: int,
    record: SourceRecord | None,
    events: list[SourceEvent],
    ctx: BatchContext,
    replays: Callable[[MessagePosition], bool],
) -> _GroupResult:
    result = _GroupResult(source_id, record, events)
    for index, event in enumerate(events):
        if time.monotonic() > ctx.deadline:
            result.stopped_at, result.stop = index, "deadline"
            break
        try:
            outcome = apply_event(result.record, event, ctx.platform, replay=replays(event.position))
        except SourceNotFound:
            log.info("source %s no longer exists; %s skipped", source_id, event.event_type)
            result.applied += 1
            continue
        except SourcesApiError as exc:
            result.stopped_at, result.stop, result.error = index, "api", str(exc)
            break
        except SourceDataError as exc:
            _reject(result, event, str(exc))
            continue
        except Exception as exc:  # a bug or an unforeseen answer: this message only
            log.exception("%s for source %s could not be applied", event.event_type, source_id)
            _reject(result, event, f"the event could not be applied ({type(exc).__name__})")
            continue
        result.record = outcome.record
        if outcome.relevant:
            result.applied += 1
            log.info("%s for source %s: %s", event.event_type, source_id, outcome.note)
        else:
            result.ignored += 1
    return result


def _reject(result: _GroupResult, event: SourceEvent, reason: str) -> None:
    """Record ``event`` as rejected; a known source also says why, as its availability."""
    log.warning("%s for source %s refused: %s", event.event_type, result.source_id, reason)
    result.rejected.append(Rejection(event.position, event.event_type, reason))
    if result.record is not None and not result.record.out_of_order_delete:
        result.record = result.record.copy()
        set_unavailable(result.record, reason)


def _apply_groups(
    groups: dict[int, list[SourceEvent]],
    before: dict[int, SourceRecord],
    ctx: BatchContext,
    replays: Callable[[MessagePosition], bool],
) -> list[_GroupResult]:
    """Each source's events applied in order; sources in parallel, after a bulk prefetch per tenant."""
    if not groups:
        return []
    by_tenant: dict[Tenant, list[int]] = defaultdict(list)
    for source_id, events in groups.items():
        by_tenant[events[0].tenant].append(source_id)
    ctx.platform.prefetch(dict(by_tenant), workers=ctx.workers)
    items = list(groups.items())
    tasks = [items[i : i + _TASK_SIZE] for i in range(0, len(items), _TASK_SIZE)]
    with ThreadPoolExecutor(max_workers=max(1, min(ctx.workers, len(tasks)))) as pool:
        done = pool.map(
            lambda task: [_process_group(sid, before.get(sid), evs, ctx, replays) for sid, evs in task], tasks
        )
        return [g for task_results in done for g in task_results]


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


def _parked(event: SourceEvent, error: str) -> parking.ParkedEvent:
    return parking.ParkedEvent(event.position, event.source_id, event.event_type, error)


def _tally(result: BatchResult, group_results: list[_GroupResult]) -> None:
    for g in group_results:
        result.applied += g.applied
        result.ignored += g.ignored
        result.rejected += g.rejected


def _commit(
    ctx: BatchContext,
    before: dict[int, SourceRecord],
    group_results: list[_GroupResult],
    result: BatchResult,
    bookkeeping: Callable[[sa.Connection], None],
) -> None:
    """Write the sources' changes and the bookkeeping (rejections of refused sources included)."""
    changes = [(before.get(g.source_id), g.record) for g in group_results]
    done_by_source = {g.source_id: g.done for g in group_results}
    refused: list[Rejection] = []

    def book(conn: sa.Connection) -> None:
        for rejection in result.rejected + refused:
            record_rejection(conn, rejection.position, rejection.event_type, rejection.reason, ctx.now)
        bookkeeping(conn)

    def refused_rejections(source_ids: Iterable[int]) -> None:
        refused.extend(
            Rejection(e.position, e.event_type, _NOT_STORED_REASON) for sid in source_ids for e in done_by_source[sid]
        )

    outcome = write_changes(ctx.engine, changes, book, ctx.fence, on_refused=refused_rejections)
    result.sources_changed = outcome.sources_changed
    result.refused_sources = outcome.refused
    result.rejected += refused


def process_batch(ctx: BatchContext, messages: list[RawMessage]) -> BatchResult:
    """Apply ``messages`` (in offset order per partition) and commit their effects."""
    result = BatchResult(read=len(messages))
    if not messages:
        return result
    groups = _group_events(messages, result)
    with ctx.engine.connect() as conn:
        before = load_sources(conn, groups)
        high_water = {
            (r["topic"], r["partition"]): r["high_water"]
            for r in conn.execute(
                sa.select(consumer_progress).where(consumer_progress.c.group_id == ctx.group_id)
            ).mappings()
        }
        waiting = parking.parked_sources(conn, groups)
    behind = "waits behind an earlier event of its source"
    to_park = [_parked(e, behind) for sid in sorted(waiting) for e in groups[sid]]
    direct = {sid: evs for sid, evs in groups.items() if sid not in waiting}
    calls_before = ctx.platform.calls
    group_results = _apply_groups(direct, before, ctx, lambda p: p.offset <= high_water.get((p.topic, p.partition), -1))
    result.api_calls = ctx.platform.calls - calls_before
    _tally(result, group_results)
    to_park += [_parked(e, g.error) for g in group_results if g.stop == "api" for e in g.rest]
    carried = [e.position for g in group_results if g.stop == "deadline" for e in g.rest]
    result.parked, result.carried = len(to_park), len(carried)
    _set_commit_offsets(messages, carried, result)
    through = _applied_through(messages, carried)

    def bookkeeping(conn: sa.Connection) -> None:
        parking.park(conn, to_park, ctx.now, ctx.backoff)
        for tp, offset in through.items():
            _raise_high_water(conn, ctx.group_id, tp, offset)

    _commit(ctx, before, group_results, result, bookkeeping)
    return result


def retry_parked(
    ctx: BatchContext, due: list[parking.ParkedEvent], messages: list[RawMessage], gone: set[MessagePosition]
) -> BatchResult:
    """Apply parked events read again from Kafka (``messages``); those Kafka no longer holds (``gone``)
    are recorded as rejected. A source's events apply in order up to the first one not read back; a
    source whose calls fail again stays parked with one more attempt (capped back-off)."""
    result = BatchResult()
    found = {m.position: m for m in messages}
    ready: list[parking.ParkedEvent] = []
    blocked: set[int] = set()
    for p in due:  # per source in offset order: stop at the first event neither read nor gone
        if p.source_id in blocked or (p.position not in found and p.position not in gone):
            blocked.add(p.source_id)
            continue
        ready.append(p)
    expired = [p for p in ready if p.position not in found]
    expired_reason = "the event was no longer in Kafka when it could be retried"
    result.rejected += [Rejection(p.position, p.event_type, expired_reason) for p in expired]
    groups = _group_events([found[p.position] for p in ready if p.position in found], result)
    with ctx.engine.connect() as conn:
        before = load_sources(conn, groups)
    group_results = _apply_groups(groups, before, ctx, lambda _p: False)
    _tally(result, group_results)
    left = {e.position for g in group_results for e in g.rest}
    handled = [p.position for p in ready if p.position not in left]
    failed = {g.source_id: g.error for g in group_results if g.stop == "api"}
    result.unparked = len(handled)

    def bookkeeping(conn: sa.Connection) -> None:
        parking.unpark(conn, handled)
        for source_id, error in failed.items():
            parking.defer(conn, source_id, error, ctx.now, ctx.backoff)

    _commit(ctx, before, group_results, result, bookkeeping)
    return result


def _set_commit_offsets(messages: list[RawMessage], carried: list[MessagePosition], result: BatchResult) -> None:
    """Where each partition resumes: its first carried event, else after the last message read."""
    for m in messages:
        tp = (m.position.topic, m.position.partition)
        result.commit_offsets[tp] = max(result.commit_offsets.get(tp, 0), m.position.offset + 1)
    for position in carried:
        tp = (position.topic, position.partition)
        result.commit_offsets[tp] = min(result.commit_offsets[tp], position.offset)


def _applied_through(messages: list[RawMessage], carried: list[MessagePosition]) -> dict[TopicPartition, int]:
    """Highest offset per partition whose effects this batch commits (parked events count: they are durable)."""
    left = set(carried)
    through: dict[TopicPartition, int] = {}
    for m in messages:
        if m.position not in left:
            tp = (m.position.topic, m.position.partition)
            through[tp] = max(through.get(tp, -1), m.position.offset)
    return through


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
