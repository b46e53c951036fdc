"""Applications (a source x an application type): the record, its REST and event forms, and writes."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from koku_devtools.platform_sources.authentications import application_authentication_event, authentication_event
from koku_devtools.platform_sources.errors import bad_request
from koku_devtools.platform_sources.events import Event
from koku_devtools.platform_sources.fields import (
    availability_status,
    event_time,
    optional_object,
    optional_str,
    parse_time,
    rest_time,
    to_id,
    utcnow,
    without_empty,
)
from koku_devtools.platform_sources.tenants import Tenant

if TYPE_CHECKING:
    from koku_devtools.platform_sources.store import Store

_STATUS_FIELDS = frozenset({"availability_status", "availability_status_error", "last_checked_at", "last_available_at"})
_TIME_FIELDS = ("last_checked_at", "last_available_at")


@dataclass
class Application:
    """An application (source x application type)."""

    id: int
    tenant_id: int
    source_id: int
    application_type_id: int
    created_at: datetime
    updated_at: datetime
    extra: dict[str, Any] | None = None
    availability_status: str | None = "in_progress"
    availability_status_error: str = ""
    last_checked_at: datetime | None = None
    last_available_at: datetime | None = None
    paused_at: datetime | None = None


def render_application(a: Application) -> dict[str, Any]:
    """REST form of an application (nulls and empty error omitted)."""
    data: dict[str, Any] = {
        "id": str(a.id),
        "created_at": rest_time(a.created_at),
        "updated_at": rest_time(a.updated_at),
        **without_empty(
            {
                "availability_status": a.availability_status,
                "availability_status_error": a.availability_status_error,
                "last_checked_at": rest_time(a.last_checked_at),
                "last_available_at": rest_time(a.last_available_at),
                "paused_at": rest_time(a.paused_at),
            }
        ),
    }
    if a.extra is not None:
        data["extra"] = copy.deepcopy(a.extra)
    data["source_id"] = str(a.source_id)
    data["application_type_id"] = str(a.application_type_id)
    return data


def application_event(a: Application, tenant: str) -> dict[str, Any]:
    """Kafka body of ``Application.*``."""
    return {
        "id": a.id,
        "created_at": event_time(a.created_at),
        "updated_at": event_time(a.updated_at),
        "paused_at": event_time(a.paused_at),
        "availability_status": a.availability_status or None,
        "last_checked_at": event_time(a.last_checked_at),
        "last_available_at": event_time(a.last_available_at),
        "availability_status_error": a.availability_status_error or None,
        "extra": copy.deepcopy(a.extra),
        "superkey_data": None,
        "source_id": a.source_id,
        "application_type_id": a.application_type_id,
        "tenant": tenant,
    }


def create_application(store: Store, tenant: Tenant, body: dict[str, Any]) -> tuple[Application, list[Event]]:
    """POST /applications (no event on a superkey source)."""
    with store.lock:
        if body.get("source_id") is None or body.get("application_type_id") is None:
            raise bad_request("source_id and application_type_id are required")
        source_id = to_id(body["source_id"], "source_id")
        type_id = to_id(body["application_type_id"], "application_type_id")
        source = store.sources.get(source_id)
        if source is None or source.tenant_id != tenant.id:
            raise bad_request("source not found")
        app_type = store.application_types.get(type_id)
        if app_type is None:
            raise bad_request("application type not found")
        if store.source_types[source.source_type_id].name not in app_type.supported_source_types:
            raise bad_request("Validation failed: source type is not compatible with this application type")
        if any(a.source_id == source_id and a.application_type_id == type_id for a in store.applications.values()):
            raise bad_request(
                f"Application of application type = {type_id} already exists for the source id = {source_id}"
            )
        now = utcnow()
        app = Application(
            id=store.new_id("application"),
            tenant_id=tenant.id,
            source_id=source_id,
            application_type_id=type_id,
            created_at=now,
            updated_at=now,
            extra=optional_object(body, "extra"),
            availability_status=availability_status(body) or "in_progress",
            availability_status_error=optional_str(body, "availability_status_error") or "",
        )
        store.applications[app.id] = app
        if source.app_creation_workflow == "account_authorization":
            return app, []
        return app, [("Application.create", application_event(app, tenant.external_tenant))]


def _check_update(app: Application, body: dict[str, Any]) -> str | None:
    """Refuse what PATCH may not change; returns the new availability status, if any."""
    unknown = set(body) - _STATUS_FIELDS - {"extra"}
    if unknown:
        raise bad_request(f"cannot update {', '.join(sorted(unknown))}")
    if app.paused_at is not None and "extra" in body:
        raise bad_request("only the availability status may be updated on a paused application")
    status = availability_status(body)
    error = body.get("availability_status_error")
    if error is not None and not isinstance(error, str):
        raise bad_request("availability_status_error must be a string")
    return status


def update_application(
    store: Store, tenant: Tenant, app_id: int, body: dict[str, Any]
) -> tuple[Application, list[Event]]:
    """PATCH /applications/:id: ``extra`` replaces the object; status is copied to the source."""
    with store.lock:
        app = store.application(tenant, app_id)
        status = _check_update(app, body)
        event_type = "Application.update"
        source = store.sources[app.source_id]
        if "extra" in body:
            app.extra = optional_object(body, "extra")
            if source.app_creation_workflow == "account_authorization" and "_superkey" in (app.extra or {}):
                event_type = "Application.create"
        if "availability_status_error" in body:
            app.availability_status_error = body["availability_status_error"] or ""
        for key in _TIME_FIELDS:
            if key in body:
                setattr(app, key, parse_time(body[key]))
        if status and status != app.availability_status:
            app.availability_status = status
            source.availability_status = status
            for key in _TIME_FIELDS:
                if getattr(app, key) is not None:
                    setattr(source, key, getattr(app, key))
        app.updated_at = utcnow()
        return app, [(event_type, application_event(app, tenant.external_tenant))]


def delete_application(store: Store, tenant: Tenant, app_id: int) -> list[Event]:
    """DELETE /applications/:id with the service's cascade order."""
    with store.lock:
        app = store.application(tenant, app_id)
        account = tenant.external_tenant
        links = sorted(
            (x for x in store.application_authentications.values() if x.application_id == app.id),
            key=lambda x: x.id,
        )
        auths = sorted(
            (a for a in store.authentications.values() if a.resource_type == "Application" and a.resource_id == app.id),
            key=lambda a: a.id,
        )
        events: list[Event] = [
            ("ApplicationAuthentication.destroy", application_authentication_event(x, account)) for x in links
        ]
        events.append(("Application.destroy", application_event(app, account)))
        events += [("Authentication.destroy", authentication_event(a, account)) for a in auths]
        for x in links:
            del store.application_authentications[x.id]
        for auth in auths:
            store.drop_authentication(auth.id)
        del store.applications[app.id]
        return events


def set_paused(apps: Iterable[Application], pause: bool, now: datetime) -> list[Event]:
    """Pause or unpause applications at ``now``; their events (with an empty tenant, as the service sends)."""
    event_type = f"Application.{'pause' if pause else 'unpause'}"
    events: list[Event] = []
    for app in apps:
        app.paused_at = now if pause else None
        app.updated_at = now
        events.append((event_type, application_event(app, "")))
    return events


def pause_application(store: Store, tenant: Tenant, app_id: int, pause: bool) -> list[Event]:
    """POST /applications/:id/pause or /unpause."""
    with store.lock:
        return set_paused([store.application(tenant, app_id)], pause, utcnow())
