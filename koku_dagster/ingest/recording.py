"""How a workflow step records its outcome: failures in the manifest state (and file statuses),
the deletion guard, and retention. Plain values only (engine, object store, settings values)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa

from koku_dagster.infra.db.types import utcnow
from koku_dagster.infra.object_store import ObjectStore
from koku_dagster.ingest import manifests
from koku_dagster.ingest.polling import billing_months
from koku_dagster.ingest.provider import discard_if_deleted, load_provider, report_availability
from koku_dagster.providers.availability import redact, status_message


class WorkflowError(Exception):
    """A step of a provider month did not complete; the message says why (no secrets)."""


class StepRefused(WorkflowError):
    """A step cannot start (no such provider, no recorded manifest, wrong provider type, deleted meanwhile)."""


class StepFailed(WorkflowError):
    """A step's work failed; the error is recorded in the manifest state."""


def fail_step(
    engine: sa.Engine,
    manifest_id: int | None,
    step: manifests.Step,
    error: Exception,
    provider_uuid: str,
    *,
    unavailable: bool = False,
) -> StepFailed:
    """Record ``error`` as the step's failure (and, if ``unavailable``, the source as unavailable with the
    fixed message of its kind). The raw text, credentials redacted, goes to the manifest state and the run
    log only."""
    ctx = load_provider(engine, provider_uuid)
    message = redact(f"{type(error).__name__}: {error}", ctx.credentials if ctx else {})[:2000]
    if manifest_id is not None:
        manifests.set_step(engine, manifest_id, step, "failed", message)
    if unavailable:
        report_availability(engine, provider_uuid, status_message(error))
    return StepFailed(message)


@contextmanager
def recorded_step(
    engine: sa.Engine, manifest_id: int, step: manifests.Step, provider_uuid: str, *, files: bool = False
) -> Iterator[None]:
    """Any error of a step's work becomes :class:`StepFailed`, recorded in the manifest state (and, with
    ``files``, as every file's status): nothing is left looking in progress."""
    try:
        yield
    except Exception as exc:
        if files:
            for name in manifests.file_statuses(engine, manifest_id):
                manifests.set_file_status(engine, manifest_id, name, manifests.FileStatus.FAILED)
        raise fail_step(engine, manifest_id, step, exc, provider_uuid) from None


def ensure_live(engine: sa.Engine, object_store: ObjectStore, provider_uuid: str) -> None:
    """After a step wrote files: refuse (and remove them again) if the provider was deleted meanwhile."""
    if discard_if_deleted(engine, object_store, provider_uuid):
        raise StepRefused(f"provider {provider_uuid} was deleted during the run; what the run wrote was removed")


@dataclass(frozen=True)
class Purge:
    """What retention removed: month folders and manifests older than ``cutoff`` (the first month kept)."""

    cutoff: date
    month_folders: int
    manifests: int

    def message(self) -> str | None:
        if not (self.month_folders or self.manifests):
            return None
        return (
            f"retention: removed {self.month_folders} month folder(s) and {self.manifests} manifest(s) "
            f"before {self.cutoff}"
        )


def purge_expired(engine: sa.Engine, object_store: ObjectStore, provider_uuid: str, retain_num_months: int) -> Purge:
    """Drop the provider's months older than ``KOKU_RETAIN_NUM_MONTHS`` (files and manifests).

    Done when a polled provider's manifest is looked for (even when nothing new came) and after each
    summary (OpenShift months are summarised, never polled).
    """
    cutoff = billing_months(utcnow().date(), retain_num_months)[-1]
    folders = object_store.delete_months_before(provider_uuid, cutoff)
    removed = manifests.purge_manifests_before(engine, provider_uuid, cutoff)
    return Purge(cutoff, folders, removed)
