"""One bounded pass of the sources integration: events in, providers out, statuses back.

Called by the Dagster sensor on every tick, and by tests and benchmarks directly. Order:
read a batch -> commit its effects -> commit Kafka offsets -> run due provider operations
-> send changed statuses. Every step is idempotent, so a crash anywhere is healed by the
next pass.
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

from koku_dagster.infra.db.schema import provider, rejected_message, sources
from koku_dagster.infra.db.types import utcnow
from koku_dagster.infra.kafka import BatchConsumer
from koku_dagster.sources.batch import BatchResult, blocked_partitions, process_batch
from koku_dagster.sources.client import SourcesClient
from koku_dagster.sources.errors import SourcesApiError
from koku_dagster.sources.platform import PlatformView
from koku_dagster.sources.provider_operations import DataPurger, OperationResult, ProviderOperations
from koku_dagster.sources.status_push import PushSummary, push_pending_statuses

log = logging.getLogger(__name__)

SOURCES_GROUP = "hccm-sources"

#: Source type names never change within one Platform Sources service: cache per API base.
_TYPE_NAME_CACHE: dict[str, dict[int, str]] = {}


@dataclass(frozen=True)
class SyncLimits:
    max_messages: int = 5000
    read_budget_seconds: float = 8.0
    #: Further full batches are read while a pass is younger than this.
    drain_budget_seconds: float = 12.0
    total_budget_seconds: float = 30.0
    max_operations: int = 5000
    max_status_pushes: int = 5000
    workers: int = 16


@dataclass
class SyncReport:
    api_available: bool = True
    kafka_available: bool = True
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
    def reingest(self) -> list[str]:
        return [r.provider_uuid for r in self.operations if r.reingest and r.provider_uuid]

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
    ) -> None:
        self.engine = engine
        self.client = client
        self.bootstrap = bootstrap
        self.topic = topic
        self.group_id = group_id
        self.limits = limits
        self.operations = ProviderOperations(engine, local_roots, purge_data)

    def run_once(self, now: datetime | None = None) -> SyncReport:
        started = time.monotonic()
        now = now or utcnow()
        report = SyncReport()
        cost_type_id: int | None
        try:
            cost_type_id = self.client.cost_management_type_id()
        except SourcesApiError as exc:
            # Platform Sources is down: read nothing (offsets stay), but local work goes on.
            log.warning("Platform Sources unavailable, events wait: %s", exc)
            report.api_available, cost_type_id = False, None
        if cost_type_id is not None:
            try:
                report.batch = self._drain(cost_type_id, now, report, started)
            except KafkaException as exc:
                # The broker is unreachable: nothing was committed; the next pass reads again.
                log.warning("Kafka unavailable, events wait: %s", exc)
                report.kafka_available = False
        deadline = started + self.limits.total_budget_seconds
        report.operations = self.operations.run_many(self.operations.due(now, self.limits.max_operations), deadline)
        if cost_type_id is not None and time.monotonic() < deadline:
            report.statuses = push_pending_statuses(
                self.engine, self.client, cost_type_id, limit=self.limits.max_status_pushes, workers=self.limits.workers
            )
        report.seconds = time.monotonic() - started
        return report

    def _drain(self, cost_type_id: int, now: datetime, report: SyncReport, started: float) -> BatchResult:
        """Apply full batches while the read budget lasts, so a backlog's events land first."""
        total = self._consume(cost_type_id, now, report)
        while (
            total.read
            and not total.retrying
            and total.read % self.limits.max_messages == 0
            and time.monotonic() - started < self.limits.drain_budget_seconds
        ):
            more = self._consume(cost_type_id, now, report)
            if not more.read:
                break
            total = total.merged(more)
        return total

    def _consume(self, cost_type_id: int, now: datetime, report: SyncReport) -> BatchResult:
        blocked = [p for (t, p) in blocked_partitions(self.engine, now) if t == self.topic]
        platform = PlatformView(self.client, cost_type_id, _TYPE_NAME_CACHE.setdefault(self.client.api_base, {}))
        with BatchConsumer(self.bootstrap, self.topic, self.group_id) as consumer:
            messages, starts = consumer.read(
                max_messages=self.limits.max_messages,
                budget_seconds=self.limits.read_budget_seconds,
                skip_partitions=blocked,
            )
            for partition, offset in starts.items():
                report.start_offsets.setdefault(partition, offset)  # where this pass began
            result = process_batch(self.engine, self.group_id, messages, platform, now, workers=self.limits.workers)
            consumer.commit({p: off for (t, p), off in result.commit_offsets.items() if t == self.topic})
        return result


def record_counts(engine: sa.Engine) -> dict[str, dict[str, int]]:
    """Counts for metadata: sources by type and state, providers by type and state, rejections."""
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
            state = "failed"
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
    }


def provider_uuids(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(provider.c.uuid)).scalars())
