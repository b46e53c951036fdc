"""Availability status written to `api_sources.status` and sent back to Platform Sources (Koku's wording),
and the reachability state a provider starts with when it is created or its settings change.

Used by the sources integration and by ingestion, which both find a source (un)available. Only fixed
texts reach a status: the messages below, a provider type's :class:`~koku_dagster.providers.base.Unreachable`
messages and the sources integration's own refusals; raw error text goes to the run log only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from koku_dagster.infra.db.schema import provider
from koku_dagster.providers import provider_type
from koku_dagster.providers.base import Unreachable

DUPLICATE_ACCOUNT_MESSAGE = (
    "Cost management does not allow duplicate accounts. An integration already exists with these details. "
    "Edit integration settings to configure a new integration."
)
MISSING_FIELDS_MESSAGE = "The source is missing one or more required fields."
#: Reading the reports failed for a reason that is not one of the type's reachability failures.
READ_FAILED_MESSAGE = "Cost management could not read the cost reports of this source. It will try again."
#: The reachability check itself failed unexpectedly, or did not finish in time.
CHECK_FAILED_MESSAGE = "Cost management could not check this source. It will try again."
CHECK_TIMEOUT_MESSAGE = "The connection check of this source did not finish in time. It will try again."

#: What an ingestion that waits for the first successful check does: ingest, or ingest again forced.
INGEST_NEW = "new"
INGEST_AGAIN = "reingest"


def user_facing(error: str) -> str:
    """Koku's user-facing text for an internal error message."""
    if "one or more required fields is invalid/missing" in error.lower():
        return MISSING_FIELDS_MESSAGE
    return error


def build_status(error: str | None) -> dict[str, str]:
    if not error:
        return {"availability_status": "available", "availability_status_error": ""}
    return {"availability_status": "unavailable", "availability_status_error": user_facing(error)}


def status_message(error: BaseException) -> str:
    """The fixed message for a failure to reach or read a source's reports (never the raw text)."""
    return str(error) if isinstance(error, Unreachable) else READ_FAILED_MESSAGE


def redact(text: str, secrets: dict[str, Any]) -> str:
    """``text`` with every string value of ``secrets`` (credentials) replaced, for logs."""
    for value in sorted((v for v in secrets.values() if isinstance(v, str) and len(v) >= 4), key=len, reverse=True):
        text = text.replace(value, "<redacted>")
    return text


def reachable_at_creation(type_name: str) -> bool:
    """Whether a provider of this type needs no check to be reachable (it has no reports to reach: OpenShift)."""
    return not provider_type(type_name).reads_reports


def on_create(type_name: str, now: datetime) -> dict[str, Any]:
    """The reachability columns of a new provider: due for its first check at once (OpenShift: reachable),
    its first ingestion waiting for it."""
    ready = reachable_at_creation(type_name)
    return {
        "reachable": True if ready else None,
        "reachability_error": None,
        "reachability_checked_timestamp": now if ready else None,
        "settings_version": 0,
        "ingest_pending": INGEST_NEW if provider_type(type_name).polled else None,
    }


#: Reachability columns of a provider update (an executemany over :func:`on_update` parameters): due for a
#: check at once; after a credentials or billing change also unchecked until then, and ingested again.
UPDATE_VALUES: dict[str, Any] = {
    "reachability_checked_timestamp": sa.null(),
    "settings_version": provider.c.settings_version + 1,
    "reachable": sa.case((sa.bindparam("reach_reset", type_=sa.Boolean), sa.null()), else_=provider.c.reachable),
    "ingest_pending": sa.func.coalesce(sa.bindparam("reach_ingest", type_=sa.String), provider.c.ingest_pending),
}


def on_update(type_name: str, account_changed: bool) -> dict[str, Any]:
    """The parameters of :data:`UPDATE_VALUES` for one provider update."""
    reset = account_changed and not reachable_at_creation(type_name)
    ingest = INGEST_AGAIN if account_changed and provider_type(type_name).polled else None
    return {"reach_reset": reset, "reach_ingest": ingest}
