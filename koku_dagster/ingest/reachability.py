"""Reachability checks of the sources (Koku's ``cost_usage_source_ready`` and its daily status beat).

A provider is due for a check at once when it was never checked since its creation or its last
settings change (``reachability_checked_timestamp`` NULL), else once its last check is older than
:data:`RECHECK_INTERVAL`. Checks run in a small thread pool, each with its own timeout and all within
an overall deadline; each outcome is recorded on the provider (``reachable``, ``reachability_error``)
and as its source's availability (a fixed message, pushed by the sources sensor). Nothing is ingested
for a provider until a check succeeds; the ingestion that waited for it (``ingest_pending``) is then
handed out once by :func:`claim_pending_ingestions`. See docs/ingestion.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from koku_dagster.infra.db.schema import provider
from koku_dagster.infra.db.types import utcnow
from koku_dagster.ingest.provider import load_provider, set_source_status
from koku_dagster.providers import POLLED_TYPES, provider_type
from koku_dagster.providers.availability import (
    CHECK_FAILED_MESSAGE,
    CHECK_TIMEOUT_MESSAGE,
    INGEST_AGAIN,
    build_status,
    redact,
)
from koku_dagster.providers.base import ProviderContext, ReportAccess, Unreachable

#: Every source is checked again at least this often (Koku's daily status beat).
RECHECK_INTERVAL = timedelta(hours=24)


@dataclass(frozen=True)
class CheckLimits:
    """Bounds of one pass of checks."""

    per_check_seconds: float = 60.0
    overall_seconds: float = 240.0
    workers: int = 4
    #: Providers given to one pass (the sensor's run).
    max_providers: int = 50


@dataclass(frozen=True)
class CheckOutcome:
    """One provider's check: ``message`` is the fixed user text (None when reachable), ``cause`` the raw
    error for the log (credentials redacted), ``recorded`` False when its settings changed meanwhile."""

    provider_uuid: str
    reachable: bool
    message: str | None = None
    cause: str | None = None
    recorded: bool = False


@dataclass(frozen=True)
class DueCheck:
    """A provider due for a check, with the state the check would change (for idempotent run keys)."""

    provider_uuid: str
    settings_version: int
    checked: datetime | None

    @property
    def key(self) -> str:
        return f"{self.provider_uuid}.v{self.settings_version}.{self.checked.isoformat() if self.checked else '-'}"


def due_providers(engine: sa.Engine, now: datetime, limit: int) -> list[DueCheck]:
    """Providers due for a check: never checked since creation or a settings change first, then the
    oldest checks older than :data:`RECHECK_INTERVAL`; at most ``limit``."""
    checked = provider.c.reachability_checked_timestamp
    query = (
        sa.select(provider.c.uuid, provider.c.settings_version, checked)
        .where(provider.c.active, sa.or_(checked.is_(None), checked < now - RECHECK_INTERVAL))
        .order_by(checked.is_not(None), checked, provider.c.uuid)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [DueCheck(uuid, int(version), at) for uuid, version, at in conn.execute(query)]


def _cause_text(error: BaseException | None, ctx: ProviderContext) -> str | None:
    if error is None:
        return None
    return redact(f"{type(error).__name__}: {error}", ctx.credentials)[:1000]


def _check_one(ctx: ProviderContext, access: ReportAccess) -> CheckOutcome:
    """Run the type's check; never raises (an unexpected error is a failed check with a fixed message)."""
    try:
        provider_type(ctx.type).check_reachable(ctx, access)
    except Unreachable as exc:
        return CheckOutcome(ctx.uuid, False, str(exc), _cause_text(exc.__cause__ or exc.__context__, ctx))
    except Exception as exc:
        return CheckOutcome(ctx.uuid, False, CHECK_FAILED_MESSAGE, _cause_text(exc, ctx))
    return CheckOutcome(ctx.uuid, True)


def _run_bounded(contexts: list[ProviderContext], access: ReportAccess, limits: CheckLimits) -> list[CheckOutcome]:
    """Check every context in a thread pool. A check running longer than its timeout fails with the timeout
    message; at the overall deadline, checks still running or not started are left out (due again)."""
    started: dict[str, float] = {}

    def run(ctx: ProviderContext) -> CheckOutcome:
        started[ctx.uuid] = time.monotonic()
        return _check_one(ctx, access)

    outcomes: list[CheckOutcome] = []
    deadline = time.monotonic() + limits.overall_seconds
    pool = ThreadPoolExecutor(max_workers=max(1, limits.workers), thread_name_prefix="reachability")
    try:
        futures: dict[Future[CheckOutcome], ProviderContext] = {pool.submit(run, ctx): ctx for ctx in contexts}
        pending = set(futures)
        while pending and time.monotonic() < deadline:
            done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            outcomes += [f.result() for f in done]
            now = time.monotonic()
            late = {f for f in pending if now - started.get(futures[f].uuid, now) > limits.per_check_seconds}
            for future in late:
                message = f"no answer within {limits.per_check_seconds:.0f}s"
                outcomes.append(CheckOutcome(futures[future].uuid, False, CHECK_TIMEOUT_MESSAGE, message))
            pending -= late
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a late check's thread ends with its own timeouts
    return outcomes


def record_outcome(engine: sa.Engine, outcome: CheckOutcome, settings_version: int, checked_at: datetime) -> bool:
    """Record the outcome on the provider and as its source's status, unless the provider's settings changed
    since they were read for the check (then it is due again) or it is gone. Returns whether recorded."""
    with engine.begin() as conn:
        written = conn.execute(
            sa.update(provider)
            .where(
                provider.c.uuid == outcome.provider_uuid,
                provider.c.active,
                provider.c.settings_version == settings_version,
            )
            .values(
                reachable=outcome.reachable,
                reachability_error=outcome.message,
                reachability_checked_timestamp=checked_at,
            )
        ).rowcount
        if written:
            set_source_status(conn, outcome.provider_uuid, build_status(outcome.message))
    return bool(written)


def _settings_versions(engine: sa.Engine, provider_uuids: list[str]) -> dict[str, int]:
    with engine.connect() as conn:
        query = sa.select(provider.c.uuid, provider.c.settings_version).where(provider.c.uuid.in_(provider_uuids))
        return dict(conn.execute(query).tuples().all())


def check_providers(
    engine: sa.Engine, access: ReportAccess, provider_uuids: Iterable[str], limits: CheckLimits = CheckLimits()
) -> list[CheckOutcome]:
    """Check these providers (missing or inactive ones are left out) and record each outcome."""
    checked_at = utcnow()
    wanted = sorted(set(provider_uuids))[: limits.max_providers]
    versions = _settings_versions(engine, wanted)  # read before the settings the checks use
    contexts = [c for uuid in wanted if uuid in versions and (c := load_provider(engine, uuid)) and c.active]
    results: list[CheckOutcome] = []
    for outcome in _run_bounded(contexts, access, limits):
        recorded = record_outcome(engine, outcome, versions[outcome.provider_uuid], checked_at)
        results.append(CheckOutcome(outcome.provider_uuid, outcome.reachable, outcome.message, outcome.cause, recorded))
    return results


@dataclass(frozen=True)
class PendingIngestion:
    """An ingestion that waited for the provider's first successful check (after creation or a change)."""

    provider_uuid: str
    force: bool
    #: Identifies this creation and settings version (for idempotent run keys).
    stamp: str


def claim_pending_ingestions(engine: sa.Engine, limit: int = 500) -> list[PendingIngestion]:
    """Hand out (and clear) the ingestions waiting for a provider whose check succeeded (active, unpaused,
    of a polled type); others stay pending. Types that are not polled never wait."""
    query = (
        sa.select(provider.c.uuid, provider.c.ingest_pending, provider.c.created_timestamp, provider.c.settings_version)
        .where(
            provider.c.ingest_pending.is_not(None),
            provider.c.reachable,
            provider.c.active,
            ~provider.c.paused,
            provider.c.type.in_(sorted(POLLED_TYPES)),
        )
        .order_by(provider.c.uuid)
        .limit(limit)
    )
    claimed: list[PendingIngestion] = []
    with engine.begin() as conn:
        for uuid, kind, created, version in conn.execute(query).all():
            cleared = conn.execute(
                sa.update(provider)
                .where(provider.c.uuid == uuid, provider.c.settings_version == version)
                .values(ingest_pending=None)
            ).rowcount
            if cleared:
                claimed.append(PendingIngestion(uuid, kind == INGEST_AGAIN, f"{created:%Y%m%dT%H%M%S.%f}.v{version}"))
    return claimed
