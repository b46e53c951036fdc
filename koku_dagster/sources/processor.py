"""Apply one Platform Sources event to a source record (Koku's rules, without the database).

The functions here take the record as it stands (or None), the event, and a
:class:`PlatformView`, and return the record as it should be stored (or None to delete it).
They never write anything, so a batch can compute its effects first and commit them once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from koku_dagster.providers import COST_AUTHTYPES, SOURCE_TYPE_MAP
from koku_dagster.providers import availability as status_mod
from koku_dagster.sources.errors import SourceDataError, SourceNotFound
from koku_dagster.sources.events import (
    APPLICATION_EVENTS,
    AUTHENTICATION_EVENTS,
    SourceEvent,
)
from koku_dagster.sources.model import SourceDetails, SourceRecord
from koku_dagster.sources.platform import PlatformView
from koku_dagster.sources.provider_operations import provider_settings
from koku_dagster.sources.source_settings import build_credentials, build_data_source

log = logging.getLogger(__name__)

VALID_AUTHTYPES = frozenset(COST_AUTHTYPES.values())

_Handler = Callable[[SourceRecord, SourceEvent, PlatformView], str]


@dataclass
class Outcome:
    """The record after an event, and a short note for the log (no secrets)."""

    record: SourceRecord | None
    note: str
    relevant: bool = True


def is_known(record: SourceRecord | None) -> bool:
    return record is not None and not record.out_of_order_delete


def is_relevant(event: SourceEvent, record: SourceRecord | None, platform: PlatformView) -> bool:
    """Koku's cost-management filter; the attachment check is skipped for sources we already hold."""
    if event.event_type in APPLICATION_EVENTS:
        return event.application_type_id == platform.cost_type_id
    if event.event_type in AUTHENTICATION_EVENTS:
        if event.authtype not in VALID_AUTHTYPES:
            return False
        if is_known(record):
            return True
        return platform.is_cost_management_source(event.source_id, event.tenant)
    return is_known(record)  # Source.update: only for known sources


def _reset_operation(record: SourceRecord) -> None:
    record.op_attempts = 0
    record.op_failed = False
    record.op_last_error = None
    record.op_next_attempt_at = None


def flag_provider_update(record: SourceRecord) -> None:
    """Queue the update of the source's provider, if it has one (not while a delete or update waits)."""
    if record.koku_uuid and not (record.pending_delete or record.pending_update):
        record.pending_update = True
        _reset_operation(record)


def _enqueue_create_or_update(record: SourceRecord) -> None:
    """Something changed: re-screen for create, or mark the provider for update."""
    if record.pending_delete or record.pending_update:
        return
    if record.koku_uuid:
        flag_provider_update(record)
        return
    record.status = None
    record.status_push_pending = False
    _reset_operation(record)


def set_unavailable(record: SourceRecord, reason: str) -> None:
    """Record ``reason`` (a fixed message of ours) as the source's availability, to be sent."""
    new = status_mod.build_status(reason)
    if record.status != new:
        record.status = new
        record.status_push_pending = True


def _save_details(record: SourceRecord, event: SourceEvent, platform: PlatformView) -> tuple[bool, SourceDetails]:
    details = platform.source_details(event.source_id, event.tenant)
    type_name = platform.source_type_name(details.source_type_id) if details.source_type_id is not None else None
    if type_name not in SOURCE_TYPE_MAP:
        log.warning("source %s has an unexpected source type; details not saved", event.source_id)
        return False, details
    before = (record.name, record.source_uuid, record.source_type, record.auth_header)
    record.name = details.name
    record.source_uuid = details.uid.lower() if details.uid else None
    record.source_type = SOURCE_TYPE_MAP[type_name]
    record.auth_header = event.tenant.auth_header
    return before != (record.name, record.source_uuid, record.source_type, record.auth_header), details


def _ensure_type(record: SourceRecord, event: SourceEvent, platform: PlatformView) -> bool:
    """Credentials need the type; fetch details first when no event brought them yet."""
    if not record.source_type:
        _save_details(record, event, platform)
    return bool(record.source_type)


def _save_credentials(
    record: SourceRecord, event: SourceEvent, platform: PlatformView, details: SourceDetails | None = None
) -> bool:
    if not _ensure_type(record, event, platform):
        return False
    try:
        credentials = build_credentials(record.source_type, event.source_id, event.tenant, platform, details)
    except SourceDataError as exc:
        set_unavailable(record, str(exc))
        return False
    new = {"credentials": credentials}
    if record.authentication == new:
        return False
    record.authentication = new
    return True


def _save_billing(record: SourceRecord, event: SourceEvent, platform: PlatformView) -> bool:
    if not _ensure_type(record, event, platform) or record.source_type == "OCP":
        return False
    try:
        data_source = build_data_source(record.source_type, event.source_id, event.tenant, platform)
    except SourceDataError as exc:
        set_unavailable(record, str(exc))
        return False
    new = {"data_source": data_source}
    if record.billing_source == new:
        return False
    record.billing_source = new
    return True


def _create_source_event(record: SourceRecord | None, event: SourceEvent) -> SourceRecord | None:
    if record is not None:
        return None if record.out_of_order_delete else record
    return SourceRecord(
        source_id=event.source_id,
        offset=event.position.offset,
        auth_header=event.tenant.auth_header,
        account_id=event.tenant.account_id,
        org_id=event.tenant.org_id,
    )


def _destroy(record: SourceRecord | None, event: SourceEvent, platform: PlatformView, replay: bool) -> Outcome:
    if is_known(record):
        assert record is not None
        if not record.pending_delete:  # known: deleted whatever Platform Sources answers now
            record.pending_delete = True
            record.op_attempts = 0
            record.op_failed = False
            record.op_next_attempt_at = None
            return Outcome(record, "marked for deletion")
        return Outcome(record, "deletion already pending")
    if record is None and not replay:
        try:
            platform.source_details(event.source_id, event.tenant)
        except SourceNotFound:
            return Outcome(record, "already removed")
        tombstone = SourceRecord(source_id=event.source_id, offset=event.position.offset, out_of_order_delete=True)
        return Outcome(tombstone, "destroy before create: tombstone left")
    return Outcome(record, "already removed")


def apply_event(
    record: SourceRecord | None, event: SourceEvent, platform: PlatformView, *, replay: bool = False
) -> Outcome:
    """The record after ``event`` (see :func:`_apply`), remembering the application id when seen."""
    outcome = _apply(record, event, platform, replay=replay)
    if outcome.record is not None and not outcome.record.out_of_order_delete:
        app_id = platform.known_application_id(event.source_id)
        if app_id is not None:
            outcome.record.application_id = app_id
    return outcome


def _apply(record: SourceRecord | None, event: SourceEvent, platform: PlatformView, *, replay: bool = False) -> Outcome:
    """The record after ``event``. Raises SourceNotFound / SourcesApiError for the caller to handle.

    ``replay`` says the event's effects were committed before (offset at or below the
    consumer's high-water mark): a replayed destroy then leaves no tombstone. Whatever the event
    type, a change to what the provider is built from queues the provider's update.
    """
    record = record.copy() if record is not None else None
    if not is_relevant(event, record, platform):
        return Outcome(record, "not associated with cost management", relevant=False)
    kind = event.event_type
    if kind == "Application.destroy":
        return _destroy(record, event, platform, replay)
    note = "source known"
    if kind in _CREATE_EVENTS:
        existed = record is not None
        if not existed and platform.application(event.source_id, event.tenant) is None:
            # The cost application is already gone (a late or replayed create): nothing to record.
            return Outcome(None, "cost management application no longer exists")
        record = _create_source_event(record, event)
        if record is None:
            return Outcome(None, "late create after destroy: tombstone removed")
        if not existed:
            note = "source recorded"
    if not is_known(record):
        return Outcome(record, "unknown source: ignored")
    assert record is not None
    built_from = provider_settings(record)
    try:
        done = _HANDLERS[kind](record, event, platform)
    except SourceDataError as exc:  # what Platform Sources told cannot be used: the source says why
        set_unavailable(record, str(exc))
        done = "invalid data from Platform Sources"
    if provider_settings(record) != built_from:
        flag_provider_update(record)
    return Outcome(record, f"{note}; {done}" if kind in _CREATE_EVENTS else done)


def _on_application_create(record: SourceRecord, event: SourceEvent, platform: PlatformView) -> str:
    _, details = _save_details(record, event, platform)
    _save_billing(record, event, platform)
    if record.source_type == "OCP":
        _save_credentials(record, event, platform, details)
    return "details and billing saved"


def _on_application_update(record: SourceRecord, event: SourceEvent, platform: PlatformView) -> str:
    azure = record.source_type.startswith("Azure")
    changed = (_save_credentials(record, event, platform) if azure else False) | _save_billing(record, event, platform)
    if changed:
        _enqueue_create_or_update(record)
    return "billing changed" if changed else "no changes detected"


def _on_pause(paused: bool) -> _Handler:
    def handle(record: SourceRecord, event: SourceEvent, platform: PlatformView) -> str:
        if record.paused == paused:
            return "pause state unchanged"
        record.paused = paused  # the provider follows (see _apply)
        return "paused" if paused else "unpaused"

    return handle


def _on_authentication_create(record: SourceRecord, event: SourceEvent, platform: PlatformView) -> str:
    _save_credentials(record, event, platform)
    return "credentials saved"


def _on_authentication_update(record: SourceRecord, event: SourceEvent, platform: PlatformView) -> str:
    azure = record.source_type.startswith("Azure")
    changed = _save_credentials(record, event, platform)
    if azure:
        changed = _save_billing(record, event, platform) or changed
    if changed:
        _enqueue_create_or_update(record)
    return "credentials changed" if changed else "no changes detected"


def _on_source_update(record: SourceRecord, event: SourceEvent, platform: PlatformView) -> str:
    changed, details = _save_details(record, event, platform)
    if record.source_type == "OCP":
        changed = _save_credentials(record, event, platform, details) or changed
    if changed:
        _enqueue_create_or_update(record)
    return "details changed" if changed else "no changes detected"


_CREATE_EVENTS = frozenset({"Application.create", "Authentication.create"})
#: What each event type (but ``Application.destroy``) does to a known source; returns a note for the log.
_HANDLERS: dict[str, _Handler] = {
    "Application.create": _on_application_create,
    "Application.update": _on_application_update,
    "Application.pause": _on_pause(True),
    "Application.unpause": _on_pause(False),
    "Authentication.create": _on_authentication_create,
    "Authentication.update": _on_authentication_update,
    "Source.update": _on_source_update,
}
