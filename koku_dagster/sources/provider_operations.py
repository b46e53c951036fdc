"""Provider operations derived from the source rows, kept durable in ``api_sources``.

Which operation a source needs is read from its flags (Koku's screens), and retry state
(``op_attempts``, ``op_next_attempt_at``, ``op_failed``) lives in the same row, so a crash
loses nothing and the next pass resumes. Creations and updates commit in chunks (one transaction
each, one operation per transaction when a chunk fails); deletions run one by one, each purge
within the pass's deadline (a longer one goes on in the background and is waited for by the next
pass). A failing operation is never given up: it is retried with capped back-off, and after
:data:`FAILING_AFTER_ATTEMPTS` it is flagged (``op_failed``) and the source reported unavailable
while it waits. See docs/sources.md, step 5.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from koku_dagster.infra.db.schema import (
    customer,
    manifest,
    provider,
    provider_authentication,
    provider_billing_source,
    report_status,
    sources,
)
from koku_dagster.infra.db.types import utcnow
from koku_dagster.providers import availability as status_mod
from koku_dagster.sources.errors import ProviderValidationError
from koku_dagster.sources.local_folders import check_not_shared, load_local_folders, local_folder
from koku_dagster.sources.model import SourceRecord
from koku_dagster.sources.purge import purge_within
from koku_dagster.sources.retry import Backoff
from koku_dagster.sources.source_rows import load_source, load_sources, save_source, save_sources, source_from_row
from koku_dagster.sources.source_settings import settings_complete
from koku_dagster.sources.validation import validate_provider_settings

log = logging.getLogger(__name__)

Operation = Literal["create", "update", "destroy"]
#: Removes every stored file of a provider (every path holding ``source={uuid}``).
DataPurger = Callable[[str], None]

#: Failed attempts after which an operation is flagged as failing (it is still retried).
FAILING_AFTER_ATTEMPTS = 8
#: Creations and updates committed together (one transaction per chunk).
CHUNK = 200
_IDS_PER_QUERY = 500
_UUID_NAMESPACE = uuid.UUID("5b0c6e2e-6a55-4c55-9d8e-6f1d6a0c0b1e")
_PROVIDER_COLUMNS = ("name", "type", "customer_id", "authentication_id", "billing_source_id", "active", "paused")
_UPDATE_PROVIDERS = (
    sa.update(provider)
    .where(provider.c.uuid == sa.bindparam("key_uuid"))
    .values({**{name: sa.bindparam(name) for name in _PROVIDER_COLUMNS}, **status_mod.UPDATE_VALUES})
)


#: What the source says while a failing operation waits for its next attempt.
_STILL_TRYING: dict[Operation, str] = {
    "create": "Cost management could not set up this integration yet; it retries automatically.",
    "update": "Cost management could not apply this integration's changes yet; it retries automatically.",
    "destroy": "Cost management could not delete this integration's data yet; it retries automatically.",
}


def schema_name_for(org_id: str) -> str:
    return f"org{org_id}"


def provider_uuid_for(source: SourceRecord) -> str:
    """The source ``uid`` when given, else a stable uuid derived from org and source id."""
    if source.source_uuid:
        return str(uuid.UUID(source.source_uuid))
    return str(uuid.uuid5(_UUID_NAMESPACE, f"{source.org_id}/{source.source_id}"))


@dataclass(frozen=True)
class ProviderSettings:
    """What a provider is built from: its row's name, type and pause state, its credentials and billing source."""

    name: str
    type: str
    paused: bool
    credentials: dict[str, Any]
    data_source: dict[str, Any]


def provider_settings(source: SourceRecord) -> ProviderSettings:
    """The settings the provider of ``source`` must have."""
    return ProviderSettings(
        (source.name or "")[:256], source.source_type, source.paused, source.credentials, source.data_source
    )


def needed_operation(source: SourceRecord) -> Operation | None:
    """Koku's screens: destroy wins, then update of a linked provider, then create."""
    if source.out_of_order_delete:
        return None
    if source.pending_delete:
        return "destroy"
    if source.koku_uuid and source.pending_update:
        return "update"
    if (
        not source.koku_uuid
        and not source.status
        and source.name
        and source.auth_header
        and settings_complete(source.source_type, source.credentials, source.data_source)
    ):
        return "create"
    return None


def stale_providers(conn: sa.Connection, touched: Iterable[SourceRecord]) -> list[int]:
    """Ids of the ``touched`` sources whose provider differs from :func:`provider_settings` of the
    source, among those with a provider and no update or delete waiting already."""
    linked: dict[str, list[SourceRecord]] = {}
    for source in touched:
        if source.koku_uuid and not (source.pending_update or source.pending_delete or source.out_of_order_delete):
            linked.setdefault(source.koku_uuid, []).append(source)
    joined = provider.outerjoin(
        provider_authentication, provider.c.authentication_id == provider_authentication.c.id
    ).outerjoin(provider_billing_source, provider.c.billing_source_id == provider_billing_source.c.id)
    query = sa.select(
        provider.c.uuid,
        provider.c.name,
        provider.c.type,
        provider.c.paused,
        provider_authentication.c.credentials,
        provider_billing_source.c.data_source,
    ).select_from(joined)
    uuids = sorted(linked)
    stale: list[int] = []
    for start in range(0, len(uuids), _IDS_PER_QUERY):
        chunk = query.where(provider.c.uuid.in_(uuids[start : start + _IDS_PER_QUERY]))
        for row in conn.execute(chunk).mappings():
            built = ProviderSettings(
                row["name"], row["type"], row["paused"], row["credentials"] or {}, row["data_source"] or {}
            )
            stale += [s.source_id for s in linked[row["uuid"]] if provider_settings(s) != built]
    return stale


def fingerprint(value: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _ids_by_fingerprint(conn: sa.Connection, table: sa.Table, fingerprints: set[str]) -> dict[str, int]:
    """Row ids by fingerprint, for those of ``fingerprints`` that exist."""
    found: dict[str, int] = {}
    wanted = sorted(fingerprints)
    for start in range(0, len(wanted), _IDS_PER_QUERY):
        query = sa.select(table.c.fingerprint, table.c.id).where(
            table.c.fingerprint.in_(wanted[start : start + _IDS_PER_QUERY])
        )
        found.update((fp, int(id_)) for fp, id_ in conn.execute(query))
    return found


def _delete_unreferenced(
    conn: sa.Connection, auth_ids: Collection[int | None], billing_ids: Collection[int | None]
) -> None:
    """Delete those of the given credentials and billing source rows that no provider uses."""
    for table, column, ids in (
        (provider_authentication, provider.c.authentication_id, auth_ids),
        (provider_billing_source, provider.c.billing_source_id, billing_ids),
    ):
        wanted = sorted({id_ for id_ in ids if id_ is not None})
        if wanted:
            used = sa.exists().where(column == table.c.id)
            conn.execute(sa.delete(table).where(table.c.id.in_(wanted), ~used))


#: A customer, credentials or billing source row: its id, or ("new", org id / fingerprint) for a
#: row the chunk inserts.
_RowKey = Any
#: (customer, credentials, billing source): what the duplicate-account rule compares.
_Account = tuple[_RowKey, _RowKey, _RowKey]


def _is_new(key: _RowKey) -> bool:
    return isinstance(key, tuple)


@dataclass
class _ChunkState:
    """What the checks of a chunk read (a few queries), kept current as its operations are planned."""

    sources: dict[int, SourceRecord]
    customer_ids: dict[str, int]
    auth_ids: dict[str, int]
    billing_ids: dict[str, int]
    #: Provider uuid -> its account as stored, for the providers the checks concern.
    stored: dict[str, _Account] = field(default_factory=dict)
    #: Provider uuid -> its account as planned so far; account -> the providers using it.
    account_of: dict[str, _Account] = field(default_factory=dict)
    providers_of: dict[_Account, set[str]] = field(default_factory=dict)
    #: (provider uuid, org id, folder) of local providers, stored or planned so far.
    local_folders: list[tuple[str, str, Path]] = field(default_factory=list)

    @classmethod
    def load(cls, conn: sa.Connection, requested: list[SourceRecord]) -> _ChunkState:
        current = load_sources(conn, [s.source_id for s in requested])
        orgs = sorted({s.org_id for s in current.values() if s.org_id is not None})
        state = cls(
            current,
            dict(conn.execute(sa.select(customer.c.org_id, customer.c.id).where(customer.c.org_id.in_(orgs))).all()),
            _ids_by_fingerprint(conn, provider_authentication, {fingerprint(s.credentials) for s in current.values()}),
            _ids_by_fingerprint(conn, provider_billing_source, {fingerprint(s.data_source) for s in current.values()}),
        )
        # The providers these sources may become, and those using their accounts (duplicate rule).
        linked = {s.koku_uuid for s in current.values() if s.koku_uuid}
        uuids = sorted({provider_uuid_for(s) for s in current.values()} | linked)
        query = sa.select(
            provider.c.uuid, provider.c.customer_id, provider.c.authentication_id, provider.c.billing_source_id
        ).where(sa.or_(provider.c.uuid.in_(uuids), provider.c.authentication_id.in_(sorted(state.auth_ids.values()))))
        for uuid_, *account in conn.execute(query):
            state.stored[uuid_] = (account[0], account[1], account[2])
            state.place(uuid_, state.stored[uuid_])
        if any(local_folder(s.source_type, s.data_source) for s in current.values()):
            state.local_folders = load_local_folders(conn)
        return state

    def account_for(self, source: SourceRecord) -> _Account:
        assert source.org_id is not None
        auth_fp, billing_fp = fingerprint(source.credentials), fingerprint(source.data_source)
        return (
            self.customer_ids.get(source.org_id, ("new", source.org_id)),
            self.auth_ids.get(auth_fp, ("new", auth_fp)),
            self.billing_ids.get(billing_fp, ("new", billing_fp)),
        )

    def place(self, uuid_: str, account: _Account) -> None:
        """Record that provider ``uuid_`` uses ``account`` (and no longer its previous one)."""
        previous = self.account_of.get(uuid_)
        if previous is not None:
            self.providers_of[previous].discard(uuid_)
        self.account_of[uuid_] = account
        self.providers_of.setdefault(account, set()).add(uuid_)

    def row_ids(self, account: _Account) -> tuple[int, int, int]:
        """The row ids of ``account`` (after the chunk's new rows are inserted)."""
        keys = zip(account, (self.customer_ids, self.auth_ids, self.billing_ids), strict=True)
        customer_id, auth_id, billing_id = (ids[key[1]] if _is_new(key) else key for key, ids in keys)
        return customer_id, auth_id, billing_id


@dataclass(frozen=True)
class _Planned:
    """A creation or update that passed every check, to be written with the rest of its chunk."""

    op: Operation
    source: SourceRecord  # as stored when the chunk began
    uuid: str
    account: _Account
    account_changed: bool


def _insert_new_rows(conn: sa.Connection, state: _ChunkState, planned: list[_Planned], now: datetime) -> None:
    """Insert the customers, credentials and billing sources the planned providers need and the
    database lacks (one statement per table), and learn their ids."""
    new_customers: dict[str, dict[str, Any]] = {}
    new_auth: dict[str, dict[str, Any]] = {}
    new_billing: dict[str, dict[str, Any]] = {}
    for p in planned:
        customer_key, auth_key, billing_key = p.account
        if _is_new(customer_key):
            org = customer_key[1]
            new_customers.setdefault(
                org,
                {
                    "org_id": org,
                    "account_id": p.source.account_id,
                    "schema_name": schema_name_for(org),
                    "date_created": now,
                    "date_updated": now,
                },
            )
        if _is_new(auth_key):
            new_auth.setdefault(auth_key[1], {"credentials": p.source.credentials, "fingerprint": auth_key[1]})
        if _is_new(billing_key):
            new_billing.setdefault(billing_key[1], {"data_source": p.source.data_source, "fingerprint": billing_key[1]})
    if new_customers:
        conn.execute(sa.insert(customer), list(new_customers.values()))
        query = sa.select(customer.c.org_id, customer.c.id).where(customer.c.org_id.in_(sorted(new_customers)))
        state.customer_ids.update(conn.execute(query).all())
    if new_auth:
        conn.execute(sa.insert(provider_authentication), list(new_auth.values()))
        state.auth_ids.update(_ids_by_fingerprint(conn, provider_authentication, set(new_auth)))
    if new_billing:
        conn.execute(sa.insert(provider_billing_source), list(new_billing.values()))
        state.billing_ids.update(_ids_by_fingerprint(conn, provider_billing_source, set(new_billing)))


def _linked(source: SourceRecord, uuid_: str) -> SourceRecord:
    """``source`` once its provider ``uuid_`` is written: linked, nothing pending; available at once only when
    its type needs no reachability check (else the check sets the status)."""
    after = source.copy()
    after.koku_uuid = uuid_
    after.pending_update = False
    after.op_attempts = 0
    after.op_next_attempt_at = None
    after.op_last_error = None
    available = status_mod.build_status(None)
    if status_mod.reachable_at_creation(source.source_type) and after.status != available:
        after.status = available
        after.status_push_pending = True
    return after


def _write_planned(conn: sa.Connection, state: _ChunkState, planned: list[_Planned], now: datetime) -> None:
    """Write the planned providers, one statement per table: new rows they need, provider updates
    (first, so a new provider may take an account an update gives up), provider inserts, rows no
    provider uses any more, and the source rows."""
    _insert_new_rows(conn, state, planned, now)
    inserts: dict[str, dict[str, Any]] = {}
    updates: dict[str, dict[str, Any]] = {}
    for p in planned:
        settings = provider_settings(p.source)
        customer_id, auth_id, billing_id = state.row_ids(p.account)
        values = {
            "name": settings.name,
            "type": settings.type,
            "customer_id": customer_id,
            "authentication_id": auth_id,
            "billing_source_id": billing_id,
            "active": True,
            "paused": settings.paused,
        }
        if p.uuid in state.stored:
            reach = status_mod.on_update(settings.type, p.account_changed)
            updates[p.uuid] = {"key_uuid": p.uuid, **values, **reach}
        else:
            reach = status_mod.on_create(settings.type, now)
            inserts[p.uuid] = {"uuid": p.uuid, "created_timestamp": now, **values, **reach}
    if updates:
        conn.execute(_UPDATE_PROVIDERS, list(updates.values()))
    if inserts:
        conn.execute(sa.insert(provider), list(inserts.values()))
    replaced = [state.stored[p.uuid] for p in planned if p.account_changed and p.uuid in state.stored]
    _delete_unreferenced(conn, [a[1] for a in replaced], [a[2] for a in replaced])
    save_sources(conn, [(p.source, _linked(p.source, p.uuid)) for p in planned])
    for p in planned:
        log.info("provider %s %sd for source %s", p.uuid, p.op, p.source.source_id)


def _delete_provider_rows(engine: sa.Engine, uuid_: str) -> None:
    """Delete a provider, its manifests and file statuses, and auth/billing rows nobody else uses."""
    with engine.begin() as conn:
        row = conn.execute(sa.select(provider).where(provider.c.uuid == uuid_)).mappings().first()
        manifest_ids = sa.select(manifest.c.id).where(manifest.c.provider_id == uuid_)
        conn.execute(sa.delete(report_status).where(report_status.c.manifest_id.in_(manifest_ids)))
        conn.execute(sa.delete(manifest).where(manifest.c.provider_id == uuid_))
        if row is not None:
            conn.execute(sa.delete(provider).where(provider.c.uuid == uuid_))
            _delete_unreferenced(conn, [row["authentication_id"]], [row["billing_source_id"]])


@dataclass(frozen=True)
class OperationResult:
    source_id: int
    operation: Operation
    #: ``waiting``: a purge still runs in the background (not a failure); ``failed``: failing repeatedly, retried.
    outcome: Literal["done", "invalid", "retry", "failed", "waiting"]
    provider_uuid: str | None = None
    error: str | None = None
    #: The provider's credentials or billing source changed: its data must be ingested again.
    reingest: bool = False


class ProviderOperations:
    """Runs the provider operations that the source rows call for."""

    def __init__(
        self,
        engine: sa.Engine,
        local_roots: tuple[Path, ...],
        purge_data: DataPurger,
        backoff: Backoff | None = None,
    ) -> None:
        self.engine = engine
        self.local_roots = local_roots
        self.purge_data = purge_data
        self.backoff = backoff or Backoff()

    # -- selection -----------------------------------------------------------------------------

    def due(self, now: datetime, limit: int) -> list[tuple[Operation, SourceRecord]]:
        """Operations due now, oldest sources first, at most ``limit``."""
        flags = sa.or_(
            sources.c.pending_delete,
            sources.c.pending_update,
            sa.and_(sources.c.koku_uuid.is_(None), sources.c.name.is_not(None)),
        )
        query = (
            sa.select(sources)
            .where(
                flags,
                ~sources.c.out_of_order_delete,
                sa.or_(sources.c.op_next_attempt_at.is_(None), sources.c.op_next_attempt_at <= now),
            )
            .order_by(sources.c.source_id)
        )
        found: list[tuple[Operation, SourceRecord]] = []
        with self.engine.connect() as conn:
            for row in conn.execute(query).mappings():
                source = source_from_row(row)
                op = needed_operation(source)
                if op is not None:
                    found.append((op, source))
                    if len(found) >= limit:
                        break
        return found

    # -- execution -----------------------------------------------------------------------------

    def run_many(self, ops: list[tuple[Operation, SourceRecord]], deadline: float) -> list[OperationResult]:
        """Run operations until ``deadline`` (monotonic): creations and updates in chunks of
        :data:`CHUNK` per transaction (one by one if a chunk fails), deletions one by one."""
        results: list[OperationResult] = []
        writes = [(op, source) for op, source in ops if op != "destroy"]
        for start in range(0, len(writes), CHUNK):
            if time.monotonic() > deadline:
                return results
            chunk = writes[start : start + CHUNK]
            try:
                with self.engine.begin() as conn:
                    done = self._create_or_update(conn, chunk, utcnow())
                results += done
            except Exception as exc:
                log.warning("a chunk of %s provider operations failed (%s); running them one by one", len(chunk), exc)
                results += [self.run(op, source, utcnow()) for op, source in chunk]
        for op, source in ops:
            if op == "destroy" and time.monotonic() <= deadline:
                results.append(self.run(op, source, utcnow(), deadline))
        return results

    def run(self, op: Operation, source: SourceRecord, now: datetime, deadline: float | None = None) -> OperationResult:
        """Run one operation in its own transaction(s); never raises for a single source's failure."""
        try:
            if op == "destroy":
                return self._destroy(source, deadline)
            with self.engine.begin() as conn:
                return self._create_or_update(conn, [(op, source)], now)[0]
        except Exception as exc:
            return self._failed(op, source, now, exc)

    def _failed(self, op: Operation, source: SourceRecord, now: datetime, exc: Exception) -> OperationResult:
        error = f"{type(exc).__name__}: {str(exc)[:300]}"
        attempts = source.op_attempts + 1
        failed = attempts >= FAILING_AFTER_ATTEMPTS
        status = status_mod.build_status(_STILL_TRYING[op]) if failed else None
        with self.engine.begin() as conn:
            self._mark(conn, source.source_id, now, attempts=attempts, failed=failed, error=error, status=status)
        log.error("provider %s for source %s failed (attempt %s): %s", op, source.source_id, attempts, error)
        return OperationResult(source.source_id, op, "failed" if failed else "retry", error=error)

    def _create_or_update(
        self, conn: sa.Connection, ops: Sequence[tuple[Operation, SourceRecord]], now: datetime
    ) -> list[OperationResult]:
        """Create or update the providers of ``ops`` within ``conn``, in order, by one set of rules.

        A few queries read what the checks need; every check runs (:meth:`_plan`) before the first
        write, a refusal is recorded and the others go on; the rest is written with one statement
        per table. Anything but a refusal raises.
        """
        state = _ChunkState.load(conn, [source for _, source in ops])
        results: list[OperationResult] = []
        planned: list[_Planned] = []
        for op, source in ops:
            try:
                decided = self._plan(state, op, source)
            except ProviderValidationError as exc:
                results.append(self._refused(conn, op, source, now, exc))
                continue
            if isinstance(decided, OperationResult):
                results.append(decided)
                continue
            planned.append(decided)
            reingest = op == "update" and decided.account_changed
            results.append(OperationResult(source.source_id, op, "done", decided.uuid, reingest=reingest))
        if planned:
            _write_planned(conn, state, planned, now)
        return results

    def _plan(self, state: _ChunkState, op: Operation, source: SourceRecord) -> _Planned | OperationResult:
        """Koku's rules for one creation or update, against ``state`` (which it updates).

        Raises :class:`ProviderValidationError` to refuse; returns a result when the source no
        longer needs ``op`` (it changed meanwhile).
        """
        current = state.sources.get(source.source_id)
        if current is None or needed_operation(current) != op:
            return OperationResult(source.source_id, op, "done", (current.koku_uuid if current else None) or "")
        validate_provider_settings(current.source_type, current.credentials, current.data_source, self.local_roots)
        uuid_ = current.koku_uuid if op == "update" and current.koku_uuid else provider_uuid_for(current)
        account = state.account_for(current)
        previous = state.account_of.get(uuid_)
        if previous is not None and previous[0] != account[0]:
            raise ProviderValidationError("A provider with this source's uid belongs to another organization.")
        account_changed = previous != account
        if account_changed and state.providers_of.get(account, set()) - {uuid_}:
            raise ProviderValidationError(status_mod.DUPLICATE_ACCOUNT_MESSAGE)
        folder = local_folder(current.source_type, current.data_source)
        assert current.org_id is not None
        check_not_shared(folder, current.org_id, uuid_, state.local_folders)
        state.place(uuid_, account)
        if folder is not None:
            state.local_folders.append((uuid_, current.org_id, folder))
        return _Planned(op, current, uuid_, account, account_changed)

    def _refused(
        self, conn: sa.Connection, op: Operation, source: SourceRecord, now: datetime, exc: ProviderValidationError
    ) -> OperationResult:
        self._mark(conn, source.source_id, now, status=status_mod.build_status(str(exc)), error=str(exc))
        log.warning("provider %s for source %s refused: %s", op, source.source_id, exc)
        return OperationResult(source.source_id, op, "invalid", error=str(exc))

    def _mark(
        self,
        conn: sa.Connection,
        source_id: int,
        now: datetime,
        *,
        status: dict[str, str] | None = None,
        error: str | None = None,
        attempts: int | None = None,
        failed: bool = False,
    ) -> None:
        before = load_source(conn, source_id)
        if before is None:
            return
        after = before.copy()
        after.op_last_error = error
        if attempts is not None:
            after.op_attempts = attempts
            after.op_next_attempt_at = now + self.backoff.delay(attempts)
            after.op_failed = failed
        if status is not None and after.status != status:
            after.status = status
            after.status_push_pending = True
        if status is not None and after.pending_update and after.koku_uuid:
            after.pending_update = False  # the update was refused; wait for the next change
        save_source(conn, before, after)

    def _destroy(self, source: SourceRecord, deadline: float | None) -> OperationResult:
        uuid_ = source.koku_uuid
        if uuid_:
            with self.engine.begin() as conn:
                conn.execute(sa.update(provider).where(provider.c.uuid == uuid_).values(active=False))
            # Files first: a failure here is retried, tables untouched.
            if not purge_within(self.purge_data, uuid_, deadline):
                log.info("the data of provider %s is still being deleted; the next pass waits for it", uuid_)
                return OperationResult(source.source_id, "destroy", "waiting", uuid_)
            _delete_provider_rows(self.engine, uuid_)
        with self.engine.begin() as conn:
            conn.execute(sa.delete(sources).where(sources.c.source_id == source.source_id))
        log.info("source %s and its provider %s deleted", source.source_id, uuid_)
        return OperationResult(source.source_id, "destroy", "done", uuid_)
