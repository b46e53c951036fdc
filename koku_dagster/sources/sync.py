"""One bounded pass of the sources integration: events in, providers out, statuses back.

Called by the Dagster sensor on every tick, and by tests and benchmarks directly. Order: take the
pass lease -> retry parked events that are due -> read batches and commit their effects -> commit
Kafka offsets -> run due provider operations -> send changed statuses. Every phase has a deadline
within the pass's budget and leaves what is left to the next pass; every step is idempotent, so a
crash anywhere is healed by the next pass.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from confluent_kafka import KafkaException

from koku_dagster.infra.db.schema import provider, rejected_message, sources, sources_parked_message
from koku_dagster.infra.db.types import utcnow
from koku_dagster.infra.kafka import BatchConsumer
from koku_dagster.infra.settings import KafkaSecurity
from koku_dagster.sources import parking
from koku_dagster.sources.batch import BatchContext, BatchResult, process_batch, retry_parked
from koku_dagster.sources.client import SourcesClient
from koku_dagster.sources.errors import SourcesError
from koku_dagster.sources.lease import LeaseLost, SyncLease
from koku_dagster.sources.platform import PlatformView
from koku_dagster.sources.provider_operations import DataPurger, OperationResult, ProviderOperations
from koku_dagster.sources.retry import Backoff
from koku_dagster.sources.status_push import PushSummary, push_pending_statuses

log = logging.getLogger(__name__)

SOURCES_GROUP = "hccm-sources"

#: Source type names never change within one Platform Sources service: cache per API base.
_TYPE_NAME_CACHE: dict[str, dict[int, str]] = {}


@dataclass(frozen=True)
class SyncLimits:
    """Sizes and deadlines of one pass (seconds from its start); the total stays well inside a sensor tick."""

    max_messages: int = 5000
    read_budget_seconds: float = 8.0
    #: Further full batches are read while a pass is younger than this.
    drain_budget_seconds: float = 12.0
    #: No event is started (nor parked event retried) after this.
    apply_budget_seconds: float = 20.0
    #: No provider operation is started after this; a purge is waited for until then.
    operations_budget_seconds: float = 26.0
    #: No status is sent after this.
    total_budget_seconds: float = 30.0
    max_operations: int = 5000
    max_status_pushes: int = 5000
    #: Parked events retried per pass, and the time given to reading them again from Kafka.
    max_parked_retries: int = 1000
    parked_read_seconds: float = 4.0
    commit_timeout_seconds: float = 5.0
    #: How long the pass lease lasts without renewal (a crashed pass blocks no longer than this).
    lease_seconds: float = 90.0
    message_backoff: Backoff = field(default_factory=lambda: Backoff(5.0, 300.0))
    operation_backoff: Backoff = field(default_factory=lambda: Backoff(5.0, 600.0))
    workers: int = 16


@dataclass
class SyncReport:
    api_available: bool = True
    kafka_available: bool = True
    #: Another evaluation held the pass lease: this one did nothing.
    busy: bool = False
    #: Kafka confirmed every offset commit of the pass.
    offsets_committed: bool = True
    batch: BatchResult = field(default_factory=BatchResult)
    start_offsets: dict[int, int] = field(default_factory=dict)
    operations: list[OperationResult] = field(default_factory=list)
    statuses: PushSummary = field(default_factory=lambda: PushSummary(0, 0, 0))
    seconds: float = 0.0

    @property
    def created(self) -> list[str]:
        return [
            r.provider_uuid
            for r in self.operations
            if r.operation == "create" and r.outcome == "done" and r.provider_uuid
        ]

    @property
    def deleted(self) -> list[str]:
        return [
            r.provider_uuid
            for r in self.operations
            if r.operation == "destroy" and r.outcome == "done" and r.provider_uuid
        ]


class SourcesSync:
    """Everything one pass needs; cheap to build per pass."""

    def __init__(
        self,
        engine: sa.Engine,
        client: SourcesClient,
        *,
        bootstrap: str,
        topic: str,
        local_roots: tuple[Path, ...],
        purge_data: DataPurger,
        group_id: str = SOURCES_GROUP,
        limits: SyncLimits = SyncLimits(),
        security: KafkaSecurity | None = None,
    ) -> None:
        self.engine = engine
        self.client = client
        self.bootstrap = bootstrap
        self.security = security
        self.topic = topic
        self.group_id = group_id
        self.limits = limits
        self.operations = ProviderOperations(engine, local_roots, purge_data, limits.operation_backoff)

    def run_once(self, now: datetime | None = None) -> SyncReport:
        started = time.monotonic()
        report = SyncReport()
        lease = SyncLease(self.engine, f"{self.group_id}/{self.topic}", self.limits.lease_seconds)
        if not lease.acquire():
            log.warning("another sources pass is running; this one does nothing")
            report.busy = True
            return report
        try:
            self._run(now or utcnow(), report, started, lease)
        except LeaseLost as exc:
            log.error("%s", exc)
            report.busy = True
        finally:
            lease.release()
        report.seconds = time.monotonic() - started
        return report

    def _run(self, now: datetime, report: SyncReport, started: float, lease: SyncLease) -> None:
        cost_type_id: int | None
        try:
            cost_type_id = self.client.cost_management_type_id()
        except SourcesError as exc:
            # Platform Sources is down: read nothing (offsets stay), but local work goes on.
            log.warning("Platform Sources unavailable, events wait: %s", exc)
            report.api_available, cost_type_id = False, None
        if cost_type_id is not None:
            ctx = self._context(cost_type_id, now, started, lease)
            try:
                report.batch = self._retry_parked(ctx).merged(self._drain(ctx, report, started))
            except KafkaException as exc:
                # The broker is unreachable: nothing was committed; the next pass reads again.
                log.warning("Kafka unavailable, events wait: %s", exc)
                report.kafka_available = False
        with self.engine.connect() as conn:
            report.batch.retrying = parking.waiting(conn, self.topic)
        ops = self.operations.due(now, self.limits.max_operations)
        report.operations = self.operations.run_many(ops, started + self.limits.operations_budget_seconds)
        deadline = started + self.limits.total_budget_seconds
        if cost_type_id is not None and time.monotonic() < deadline:
            report.statuses = push_pending_statuses(
                self.engine,
                self.client,
                cost_type_id,
                limit=self.limits.max_status_pushes,
                workers=self.limits.workers,
                deadline=deadline,
            )

    def _context(self, cost_type_id: int, now: datetime, started: float, lease: SyncLease) -> BatchContext:
        platform = PlatformView(self.client, cost_type_id, _TYPE_NAME_CACHE.setdefault(self.client.api_base, {}))
        return BatchContext(
            self.engine,
            self.group_id,
            platform,
            now,
            started + self.limits.apply_budget_seconds,
            self.limits.message_backoff,
            lease.fence,
            self.limits.workers,
        )

    def _consumer(self) -> BatchConsumer:
        return BatchConsumer(self.bootstrap, self.topic, self.group_id, self.security)

    def _retry_parked(self, ctx: BatchContext) -> BatchResult:
        """Apply the parked events whose retry is due (read again from Kafka by position)."""
        with self.engine.connect() as conn:
            due = parking.due_parked(conn, self.topic, ctx.now, self.limits.max_parked_retries)
        if not due:
            return BatchResult()
        budget = min(self.limits.parked_read_seconds, max(0.0, ctx.deadline - time.monotonic()))
        with self._consumer() as consumer:
            messages, gone = consumer.fetch([(p.position.partition, p.position.offset) for p in due], budget)
        return retry_parked(ctx, due, messages, gone)

    def _drain(self, ctx: BatchContext, report: SyncReport, started: float) -> BatchResult:
        """Apply full batches while the read budget lasts, so a backlog's events land first."""
        total = self._consume(ctx, report)
        while (
            total.read
            and not total.carried
            and total.read % self.limits.max_messages == 0
            and time.monotonic() - started < self.limits.drain_budget_seconds
        ):
            more = self._consume(ctx, report)
            if not more.read:
                break
            total = total.merged(more)
        return total

    def _consume(self, ctx: BatchContext, report: SyncReport) -> BatchResult:
        budget = min(self.limits.read_budget_seconds, ctx.deadline - time.monotonic())
        if budget <= 0:
            return BatchResult()
        with self._consumer() as consumer:
            messages, starts = consumer.read(max_messages=self.limits.max_messages, budget_seconds=budget)
            for partition, offset in starts.items():
                report.start_offsets.setdefault(partition, offset)  # where this pass began
            result = process_batch(ctx, messages)
            offsets = {p: off for (t, p), off in result.commit_offsets.items() if t == self.topic}
            if not consumer.commit(offsets, timeout=self.limits.commit_timeout_seconds):
                report.offsets_committed = False
        return result


def record_counts(engine: sa.Engine) -> dict[str, dict[str, int]]:
    """Counts for metadata: sources by type and state, providers by type and state, rejections, and
    the work that waits (deletions, operations waiting for a retry, parked events)."""
    with engine.connect() as conn:
        src_rows = conn.execute(
            sa.select(
                sources.c.source_type,
                sources.c.koku_uuid,
                sources.c.pending_delete,
                sources.c.out_of_order_delete,
                sources.c.op_failed,
                sources.c.status,
            )
        ).all()
        prov_rows = conn.execute(sa.select(provider.c.type, provider.c.active, provider.c.paused)).all()
        rejected = conn.execute(sa.select(sa.func.count()).select_from(rejected_message)).scalar() or 0
    by_type: Counter[str] = Counter()
    by_state: Counter[str] = Counter()
    for source_type, koku_uuid, pending_delete, tombstone, failed, status in src_rows:
        by_type[source_type or "unknown"] += 1
        if tombstone:
            state = "tombstone"
        elif pending_delete:
            state = "pending_delete"
        elif failed:
            state = "failing"
        elif koku_uuid:
            state = "provider"
        elif status and status.get("availability_status") == "unavailable":
            state = "unavailable"
        else:
            state = "incomplete"
        by_state[state] += 1
    prov_type: Counter[str] = Counter()
    prov_state: Counter[str] = Counter()
    for ptype, active, paused in prov_rows:
        prov_type[ptype] += 1
        prov_state["paused" if paused else "active" if active else "inactive"] += 1
    return {
        "sources_by_type": dict(by_type),
        "sources_by_state": dict(by_state),
        "providers_by_type": dict(prov_type),
        "providers_by_state": dict(prov_state),
        "rejected_total": {"messages": int(rejected)},
        "waiting": waiting_counts(engine),
    }


def waiting_counts(engine: sa.Engine) -> dict[str, int]:
    """Work that waits: deletions not done yet, operations waiting for a retry, parked events."""

    def count(table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar() or 0)

    with engine.connect() as conn:
        return {
            "deletions": count(sources, sources.c.pending_delete, ~sources.c.out_of_order_delete),
            "operations_retrying": count(sources, sources.c.op_attempts > 0, ~sources.c.out_of_order_delete),
            "events_parked": count(sources_parked_message),
        }


def provider_uuids(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(provider.c.uuid)).scalars())
