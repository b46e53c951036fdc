"""Provider operations derived from source records, kept durable in ``api_sources``.

Which operation a source needs is read from its flags (Koku's screens), and retry state
(``op_attempts``, ``op_next_attempt_at``, ``op_failed``) lives in the same row, so a crash
loses nothing and the next pass resumes. Creations and updates commit in chunks (one transaction
each, one operation per transaction when a chunk fails); deletions run one by one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from koku_dagster.infra.db.schema import (
    customer,
    provider,
    provider_authentication,
    provider_billing_source,
    sources,
)
from koku_dagster.sources import status as status_mod
from koku_dagster.sources.errors import ProviderValidationError
from koku_dagster.sources.model import SourceRecord
from koku_dagster.sources.source_settings import settings_complete
from koku_dagster.ingest.manifests import delete_manifest_rows, provider_manifests
from koku_dagster.infra.db.types import utcnow
from koku_dagster.sources.store import load_record, load_records, record_from_row, save_record, save_records
from koku_dagster.sources.validation import validate_provider_settings

log = logging.getLogger(__name__)

Operation = Literal["create", "update", "destroy"]
#: Removes every stored file of a provider (every path holding ``source={uuid}``).
DataPurger = Callable[[str], None]

MAX_OP_ATTEMPTS = 8
#: Creations and updates committed together (one transaction per chunk).
CHUNK = 200
_BACKOFF_BASE_SECONDS = 5.0
_BACKOFF_CAP_SECONDS = 600.0
_UUID_NAMESPACE = uuid.UUID("5b0c6e2e-6a55-4c55-9d8e-6f1d6a0c0b1e")


def schema_name_for(org_id: str) -> str:
    return f"org{org_id}"


def provider_uuid_for(record: SourceRecord) -> str:
    """The source ``uid`` when given, else a stable uuid derived from org and source id."""
    if record.source_uuid:
        return str(uuid.UUID(record.source_uuid))
    return str(uuid.uuid5(_UUID_NAMESPACE, f"{record.org_id}/{record.source_id}"))


def needed_operation(record: SourceRecord) -> Operation | None:
    """Koku's screens: destroy wins, then update of a linked provider, then create."""
    if record.out_of_order_delete:
        return None
    if record.pending_delete:
        return "destroy"
    if record.koku_uuid and record.pending_update:
        return "update"
    if (
        not record.koku_uuid
        and not record.status
        and record.name
        and record.auth_header
        and settings_complete(record.source_type, record.credentials, record.data_source)
    ):
        return "create"
    return None


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1)))


def fingerprint(value: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _find_json(conn: sa.Connection, table: sa.Table, value: dict[str, Any]) -> int | None:
    """The row holding exactly ``value`` (by its fingerprint), if any."""
    found = conn.execute(sa.select(table.c.id).where(table.c.fingerprint == fingerprint(value))).scalar()
    return int(found) if found is not None else None


def _ids_by_fingerprint(conn: sa.Connection, table: sa.Table, fingerprints: set[str]) -> dict[str, int]:
    """Row ids by fingerprint, for those of ``fingerprints`` that exist."""
    found: dict[str, int] = {}
    wanted = sorted(fingerprints)
    for start in range(0, len(wanted), 500):
        query = sa.select(table.c.fingerprint, table.c.id).where(table.c.fingerprint.in_(wanted[start : start + 500]))
        found.update((fp, int(id_)) for fp, id_ in conn.execute(query))
    return found


def _insert_json(conn: sa.Connection, table: sa.Table, column: str, value: dict[str, Any]) -> int:
    result = conn.execute(sa.insert(table).values(**{column: value, "fingerprint": fingerprint(value)}))
    return int(result.inserted_primary_key[0])


def get_or_create_customer(conn: sa.Connection, org_id: str, account_id: str | None, now: datetime) -> int:
    found = conn.execute(sa.select(customer.c.id).where(customer.c.org_id == org_id)).scalar()
    if found is not None:
        return int(found)
    result = conn.execute(
        sa.insert(customer).values(
            org_id=org_id,
            account_id=account_id,
            schema_name=schema_name_for(org_id),
            date_created=now,
            date_updated=now,
        )
    )
    return int(result.inserted_primary_key[0])


def _delete_unreferenced(conn: sa.Connection, auth_id: int | None, billing_id: int | None) -> None:
    if auth_id is not None and not conn.execute(
        sa.select(sa.func.count()).select_from(provider).where(provider.c.authentication_id == auth_id)
    ).scalar():
        conn.execute(sa.delete(provider_authentication).where(provider_authentication.c.id == auth_id))
    if billing_id is not None and not conn.execute(
        sa.select(sa.func.count()).select_from(provider).where(provider.c.billing_source_id == billing_id)
    ).scalar():
        conn.execute(sa.delete(provider_billing_source).where(provider_billing_source.c.id == billing_id))


def _check_duplicate(conn: sa.Connection, uuid_: str, auth_id: int, billing_id: int, customer_id: int) -> None:
    duplicate = conn.execute(
        sa.select(provider.c.uuid).where(
            provider.c.authentication_id == auth_id,
            provider.c.billing_source_id == billing_id,
            provider.c.customer_id == customer_id,
            provider.c.uuid != uuid_,
        )
    ).first()
    if duplicate is not None:
        raise ProviderValidationError(status_mod.DUPLICATE_ACCOUNT_MESSAGE)


@dataclass(frozen=True)
class OperationResult:
    source_id: int
    operation: Operation
    outcome: Literal["done", "invalid", "retry", "failed"]
    provider_uuid: str | None = None
    error: str | None = None
    #: The provider's credentials or billing source changed: its data must be ingested again.
    reingest: bool = False


class ProviderOperations:
    """Runs the provider operations that source records call for."""

    def __init__(self, engine: sa.Engine, local_roots: tuple[Path, ...], purge_data: DataPurger) -> None:
        self.engine = engine
        self.local_roots = local_roots
        self.purge_data = purge_data

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
                ~sources.c.op_failed,
                sa.or_(sources.c.op_next_attempt_at.is_(None), sources.c.op_next_attempt_at <= now),
            )
            .order_by(sources.c.source_id)
        )
        found: list[tuple[Operation, SourceRecord]] = []
        with self.engine.connect() as conn:
            for row in conn.execute(query).mappings():
                record = record_from_row(row)
                op = needed_operation(record)
                if op is not None:
                    found.append((op, record))
                    if len(found) >= limit:
                        break
        return found

    # -- execution -----------------------------------------------------------------------------

    def run_many(self, ops: list[tuple[Operation, SourceRecord]], deadline: float) -> list[OperationResult]:
        """Run operations until ``deadline`` (monotonic): creations and updates in chunks of
        :data:`CHUNK` per transaction (one by one if a chunk fails), deletions one by one."""
        results: list[OperationResult] = []
        writes = [(op, record) for op, record in ops if op != "destroy"]
        for start in range(0, len(writes), CHUNK):
            if time.monotonic() > deadline:
                return results
            chunk = writes[start : start + CHUNK]
            try:
                with self.engine.begin() as conn:
                    done = self._apply_chunk(conn, chunk, utcnow())
                results += done
            except Exception as exc:  # noqa: BLE001 - isolate the failing operation
                log.warning("a chunk of %s provider operations failed (%s); running them one by one", len(chunk), exc)
                results += [self.run(op, record, utcnow()) for op, record in chunk]
        for op, record in ops:
            if op == "destroy" and time.monotonic() <= deadline:
                results.append(self.run(op, record, utcnow()))
        return results

    def run(self, op: Operation, record: SourceRecord, now: datetime) -> OperationResult:
        """Run one operation in its own transaction(s); never raises for a single source's failure."""
        try:
            if op == "destroy":
                return OperationResult(record.source_id, op, "done", self._destroy(record, now))
            with self.engine.begin() as conn:
                return self._apply(conn, op, record, now)
        except ProviderValidationError as exc:
            with self.engine.begin() as conn:
                return self._refused(conn, op, record, now, exc)
        except Exception as exc:  # noqa: BLE001 - any failure is retried, bounded
            error = f"{type(exc).__name__}: {str(exc)[:300]}"
            attempts = record.op_attempts + 1
            failed = attempts >= MAX_OP_ATTEMPTS
            with self.engine.begin() as conn:
                self._mark(
                    conn,
                    record.source_id,
                    now,
                    attempts=attempts,
                    failed=failed,
                    error=error,
                    status=status_mod.build_status(
                        f"Cost management could not {op} this integration; retries exhausted."
                    )
                    if failed
                    else None,
                )
            log.error("provider %s for source %s failed (attempt %s): %s", op, record.source_id, attempts, error)
            return OperationResult(record.source_id, op, "failed" if failed else "retry", error=error)

    def _apply_chunk(
        self, conn: sa.Connection, chunk: list[tuple[Operation, SourceRecord]], now: datetime
    ) -> list[OperationResult]:
        """Apply a chunk in order within ``conn``: runs of creations together (:meth:`_create_many`),
        updates (and creations whose provider row exists already) one by one."""
        results: list[OperationResult] = []
        i = 0
        while i < len(chunk):
            end = i
            while end < len(chunk) and chunk[end][0] == "create":
                end += 1
            if end > i:
                i += len(done := self._create_many(conn, [record for _, record in chunk[i:end]], now))
                results += done
            if i < len(chunk) and (i < end or chunk[i][0] != "create"):
                op, record = chunk[i]
                results.append(self._apply(conn, op, record, now))
                i += 1
        return results

    def _create_many(self, conn: sa.Connection, records: list[SourceRecord], now: datetime) -> list[OperationResult]:
        """Create the providers of ``records`` in order, with the rules of :meth:`_create_or_update`,
        reading what the checks need in a few queries and writing one statement per table.

        Every check runs before the first write; a refusal is recorded and the others go on. It
        stops before the first record whose provider row exists already (a replay, or a uid seen
        twice): that one takes the one-by-one path. Returns the results of the records it handled,
        a prefix of ``records``.
        """
        current = load_records(conn, [r.source_id for r in records])
        orgs = sorted({r.org_id for r in records if r.org_id is not None})
        customers: dict[str, int] = dict(
            conn.execute(sa.select(customer.c.org_id, customer.c.id).where(customer.c.org_id.in_(orgs))).all()
        )
        auth_ids = _ids_by_fingerprint(conn, provider_authentication, {fingerprint(r.credentials) for r in records})
        billing_ids = _ids_by_fingerprint(conn, provider_billing_source, {fingerprint(r.data_source) for r in records})
        uuids = sorted({provider_uuid_for(c) for c in current.values()})
        existing = set(conn.execute(sa.select(provider.c.uuid).where(provider.c.uuid.in_(uuids))).scalars())
        # Providers by account (customer, authentication, billing source), for the duplicate rule.
        # Keys are row ids, or ("new", org / fingerprint) for rows this call is about to insert.
        accounts: dict[tuple[Any, Any, Any], set[str]] = {}
        if auth_ids:
            taken = sa.select(
                provider.c.uuid, provider.c.customer_id, provider.c.authentication_id, provider.c.billing_source_id
            ).where(provider.c.authentication_id.in_(sorted(auth_ids.values())))
            for uuid_, customer_id, auth_id, billing_id in conn.execute(taken):
                accounts.setdefault((customer_id, auth_id, billing_id), set()).add(uuid_)

        results: list[OperationResult] = []
        new_customers: dict[str, dict[str, Any]] = {}
        new_auth: dict[str, dict[str, Any]] = {}
        new_billing: dict[str, dict[str, Any]] = {}
        planned: list[tuple[SourceRecord, str, str, str, str]] = []
        for record in records:
            credentials, data_source = record.credentials, record.data_source
            try:
                validate_provider_settings(record.source_type, credentials, data_source, self.local_roots)
            except ProviderValidationError as exc:
                results.append(self._refused(conn, "create", record, now, exc))
                continue
            assert record.org_id is not None
            found = current.get(record.source_id)
            if found is None or needed_operation(found) != "create":  # changed meanwhile
                uuid_ = found.koku_uuid if found is not None and found.koku_uuid else ""
                results.append(OperationResult(record.source_id, "create", "done", uuid_))
                continue
            uuid_ = provider_uuid_for(found)
            if uuid_ in existing:
                break  # the one-by-one path updates the existing row (after this call's writes)
            org, auth_fp, billing_fp = record.org_id, fingerprint(credentials), fingerprint(data_source)
            account = (
                customers.get(org, ("new", org)),
                auth_ids.get(auth_fp, ("new", auth_fp)),
                billing_ids.get(billing_fp, ("new", billing_fp)),
            )
            if accounts.get(account, set()) - {uuid_}:
                exc = ProviderValidationError(status_mod.DUPLICATE_ACCOUNT_MESSAGE)
                results.append(self._refused(conn, "create", record, now, exc))
                continue
            if org not in customers and org not in new_customers:
                new_customers[org] = {
                    "org_id": org,
                    "account_id": record.account_id,
                    "schema_name": schema_name_for(org),
                    "date_created": now,
                    "date_updated": now,
                }
            if auth_fp not in auth_ids:
                new_auth.setdefault(auth_fp, {"credentials": credentials, "fingerprint": auth_fp})
            if billing_fp not in billing_ids:
                new_billing.setdefault(billing_fp, {"data_source": data_source, "fingerprint": billing_fp})
            accounts.setdefault(account, set()).add(uuid_)
            existing.add(uuid_)
            planned.append((found, uuid_, org, auth_fp, billing_fp))
            results.append(OperationResult(record.source_id, "create", "done", uuid_))

        # Writes from here on.
        if not planned:
            return results
        if new_customers:
            conn.execute(sa.insert(customer), list(new_customers.values()))
            customers.update(
                conn.execute(
                    sa.select(customer.c.org_id, customer.c.id).where(customer.c.org_id.in_(sorted(new_customers)))
                ).all()
            )
        if new_auth:
            conn.execute(sa.insert(provider_authentication), list(new_auth.values()))
            auth_ids.update(_ids_by_fingerprint(conn, provider_authentication, set(new_auth)))
        if new_billing:
            conn.execute(sa.insert(provider_billing_source), list(new_billing.values()))
            billing_ids.update(_ids_by_fingerprint(conn, provider_billing_source, set(new_billing)))
        rows, changes = [], []
        available = status_mod.build_status(None)
        for found, uuid_, org, auth_fp, billing_fp in planned:
            rows.append(
                {
                    "uuid": uuid_,
                    "created_timestamp": now,
                    "name": (found.name or "")[:256],
                    "type": found.source_type,
                    "customer_id": customers[org],
                    "authentication_id": auth_ids[auth_fp],
                    "billing_source_id": billing_ids[billing_fp],
                    "active": True,
                    "paused": found.paused,
                }
            )
            after = found.copy()
            after.koku_uuid = uuid_
            after.pending_update = False
            after.op_attempts = 0
            after.op_next_attempt_at = None
            after.op_last_error = None
            if after.status != available:
                after.status = dict(available)
                after.status_push_pending = True
            changes.append((found, after))
        conn.execute(sa.insert(provider), rows)
        save_records(conn, changes)
        for found, uuid_, *_ in planned:
            log.info("provider %s created for source %s", uuid_, found.source_id)
        return results

    def _apply(self, conn: sa.Connection, op: Operation, record: SourceRecord, now: datetime) -> OperationResult:
        """Create or update within ``conn``; a refusal is recorded, anything else raises."""
        try:
            uuid_, account_changed = self._create_or_update(conn, op, record, now)
        except ProviderValidationError as exc:
            return self._refused(conn, op, record, now, exc)
        return OperationResult(record.source_id, op, "done", uuid_, reingest=op == "update" and account_changed)

    def _refused(
        self, conn: sa.Connection, op: Operation, record: SourceRecord, now: datetime, exc: ProviderValidationError
    ) -> OperationResult:
        self._mark(conn, record.source_id, now, status=status_mod.build_status(str(exc)), error=str(exc))
        log.warning("provider %s for source %s refused: %s", op, record.source_id, exc)
        return OperationResult(record.source_id, op, "invalid", error=str(exc))

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
        before = load_record(conn, source_id)
        if before is None:
            return
        after = before.copy()
        after.op_last_error = error
        if attempts is not None:
            after.op_attempts = attempts
            after.op_next_attempt_at = now + backoff(attempts)
            after.op_failed = failed
        if status is not None and after.status != status:
            after.status = status
            after.status_push_pending = True
        if status is not None and after.pending_update and after.koku_uuid:
            after.pending_update = False  # the update was refused; wait for the next change
        save_record(conn, before, after)

    def _create_or_update(
        self, conn: sa.Connection, op: Operation, record: SourceRecord, now: datetime
    ) -> tuple[str, bool]:
        """Create or update the provider; return its uuid and whether its account (auth/billing) changed.

        Every check that can refuse runs before the first write, so a refusal leaves ``conn``'s
        transaction as it was and the other operations of a chunk go on.
        """
        credentials, data_source = record.credentials, record.data_source
        validate_provider_settings(record.source_type, credentials, data_source, self.local_roots)
        assert record.org_id is not None
        current = load_record(conn, record.source_id)
        if current is None or needed_operation(current) != op:
            return (current.koku_uuid if current and current.koku_uuid else ""), False  # changed meanwhile
        customer_id = conn.execute(sa.select(customer.c.id).where(customer.c.org_id == record.org_id)).scalar()
        auth_id = _find_json(conn, provider_authentication, credentials)
        billing_id = _find_json(conn, provider_billing_source, data_source)
        uuid_ = current.koku_uuid if op == "update" else provider_uuid_for(current)
        existing = conn.execute(sa.select(provider).where(provider.c.uuid == uuid_)).mappings().first()
        if existing is not None and existing["customer_id"] != customer_id:
            raise ProviderValidationError("A provider with this source's uid belongs to another organization.")
        account_changed = existing is None or (existing["authentication_id"], existing["billing_source_id"]) != (
            auth_id,
            billing_id,
        )
        if account_changed and None not in (customer_id, auth_id, billing_id):
            _check_duplicate(conn, uuid_, auth_id, billing_id, customer_id)
        # Writes from here on.
        customer_id = customer_id or get_or_create_customer(conn, record.org_id, record.account_id, now)
        auth_id = auth_id or _insert_json(conn, provider_authentication, "credentials", credentials)
        billing_id = billing_id or _insert_json(conn, provider_billing_source, "data_source", data_source)
        values = {
            "name": (current.name or "")[:256],
            "type": current.source_type,
            "customer_id": customer_id,
            "authentication_id": auth_id,
            "billing_source_id": billing_id,
            "active": True,
            "paused": current.paused,
        }
        if existing is None:
            conn.execute(sa.insert(provider).values(uuid=uuid_, created_timestamp=now, **values))
        else:
            conn.execute(sa.update(provider).where(provider.c.uuid == uuid_).values(**values))
            if account_changed:
                _delete_unreferenced(conn, existing["authentication_id"], existing["billing_source_id"])
        after = current.copy()
        after.koku_uuid = uuid_
        after.pending_update = False
        after.op_attempts = 0
        after.op_next_attempt_at = None
        after.op_last_error = None
        available = status_mod.build_status(None)
        if after.status != available:
            after.status = available
            after.status_push_pending = True
        save_record(conn, current, after)
        log.info("provider %s %sd for source %s", uuid_, op, record.source_id)
        return uuid_, account_changed

    def _destroy(self, record: SourceRecord, now: datetime) -> str | None:
        uuid_ = record.koku_uuid
        if uuid_:
            with self.engine.begin() as conn:
                conn.execute(sa.update(provider).where(provider.c.uuid == uuid_).values(active=False))
            self.purge_data(uuid_)  # files first: a failure here is retried, tables untouched
            delete_provider_rows(self.engine, uuid_)
        with self.engine.begin() as conn:
            conn.execute(sa.delete(sources).where(sources.c.source_id == record.source_id))
        log.info("source %s and its provider %s deleted", record.source_id, uuid_)
        return uuid_


def delete_provider_rows(engine: sa.Engine, uuid_: str) -> None:
    """Delete a provider, its manifests and file statuses, and auth/billing rows nobody else uses."""
    with engine.begin() as conn:
        row = conn.execute(sa.select(provider).where(provider.c.uuid == uuid_)).mappings().first()
        delete_manifest_rows(conn, provider_manifests(uuid_))
        if row is not None:
            conn.execute(sa.delete(provider).where(provider.c.uuid == uuid_))
            _delete_unreferenced(conn, row["authentication_id"], row["billing_source_id"])
