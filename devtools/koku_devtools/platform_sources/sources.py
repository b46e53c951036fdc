"""Sources: the record, its REST and event forms, and create, update, delete (with its cascade) and pause."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from koku_devtools.platform_sources.applications import application_event, set_paused
from koku_devtools.platform_sources.authentications import application_authentication_event, authentication_event
from koku_devtools.platform_sources.endpoints import endpoint_event
from koku_devtools.platform_sources.errors import bad_request
from koku_devtools.platform_sources.events import Event
from koku_devtools.platform_sources.fields import (
    availability_status,
    event_time,
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

APP_CREATION_WORKFLOWS = frozenset({"manual_configuration", "account_authorization"})
_STATUS_FIELDS = frozenset({"availability_status", "last_checked_at", "last_available_at"})
_EDITABLE_FIELDS = frozenset({"name", "version", "imported", "source_ref"}) | _STATUS_FIELDS


@dataclass
class Source:
    """A tenant's source."""

    id: int
    tenant_id: int
    name: str
    source_type_id: int
    created_at: datetime
    updated_at: datetime
    uid: str | None = None
    version: str | None = None
    imported: str | None = None
    source_ref: str | None = None
    app_creation_workflow: str = "manual_configuration"
    availability_status: str | None = "in_progress"
    last_checked_at: datetime | None = None
    last_available_at: datetime | None = None
    paused_at: datetime | None = None


def render_source(s: Source) -> dict[str, Any]:
    """REST form of a source (nulls omitted)."""
    optional = without_empty(
        {
            "paused_at": rest_time(s.paused_at),
            "uid": s.uid,
            "version": s.version,
            "imported": s.imported,
            "source_ref": s.source_ref,
        }
    )
    status = without_empty(
        {
            "availability_status": s.availability_status,
            "last_checked_at": rest_time(s.last_checked_at),
            "last_available_at": rest_time(s.last_available_at),
        }
    )
    return {
        "id": str(s.id),
        "created_at": rest_time(s.created_at),
        "updated_at": rest_time(s.updated_at),
        **optional,
        "name": s.name,
        "app_creation_workflow": s.app_creation_workflow,
        "source_type_id": str(s.source_type_id),
        **status,
    }


def source_event(s: Source, tenant: str) -> dict[str, Any]:
    """Kafka body of ``Source.*``."""
    return {
        "availability_status": s.availability_status or None,
        "last_checked_at": event_time(s.last_checked_at),
        "last_available_at": event_time(s.last_available_at),
        "id": s.id,
        "created_at": event_time(s.created_at),
        "updated_at": event_time(s.updated_at),
        "paused_at": event_time(s.paused_at),
        "name": s.name,
        "uid": s.uid,
        "version": s.version,
        "imported": s.imported,
        "source_ref": s.source_ref,
        "app_creation_workflow": s.app_creation_workflow,
        "source_type_id": s.source_type_id,
        "tenant": tenant,
    }


def _checked_name(store: Store, tenant: Tenant, body: dict[str, Any], own_id: int | None = None) -> str:
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise bad_request("name is required")
    if any(s.name == name and s.id != own_id for s in store.owned(store.sources, tenant)):
        raise bad_request("source name already exists in same tenant")
    return name


def create_source(store: Store, tenant: Tenant, body: dict[str, Any]) -> tuple[Source, list[Event]]:
    """POST /sources."""
    with store.lock:
        name = _checked_name(store, tenant, body)
        if body.get("source_type_id") is None:
            raise bad_request("source_type_id is required")
        type_id = to_id(body["source_type_id"], "source_type_id")
        if type_id not in store.source_types:
            raise bad_request("source type not found")
        workflow = body.get("app_creation_workflow") or "manual_configuration"
        if workflow not in APP_CREATION_WORKFLOWS:
            raise bad_request(f"invalid app_creation_workflow: {workflow!r}")
        uid = optional_str(body, "uid")
        if not (store.honor_uid and uid):
            uid = str(uuid.uuid4())
        now = utcnow()
        source = Source(
            id=store.new_id("source"),
            tenant_id=tenant.id,
            name=name,
            source_type_id=type_id,
            created_at=now,
            updated_at=now,
            uid=uid,
            version=optional_str(body, "version"),
            imported=optional_str(body, "imported"),
            source_ref=optional_str(body, "source_ref"),
            app_creation_workflow=workflow,
            availability_status=availability_status(body) or "in_progress",
        )
        store.sources[source.id] = source
        return source, [("Source.create", source_event(source, ""))]


def update_source(store: Store, tenant: Tenant, source_id: int, body: dict[str, Any]) -> tuple[Source, list[Event]]:
    """PATCH /sources/:id."""
    with store.lock:
        source = store.source(tenant, source_id)
        unknown = set(body) - _EDITABLE_FIELDS
        if unknown:
            raise bad_request(f"cannot update {', '.join(sorted(unknown))}")
        if source.paused_at is not None and set(body) - _STATUS_FIELDS:
            raise bad_request("only the availability status may be updated on a paused source")
        if "name" in body:
            source.name = _checked_name(store, tenant, body, own_id=source.id)
        for key in ("version", "imported", "source_ref"):
            if key in body:
                setattr(source, key, optional_str(body, key))
        status = availability_status(body)
        if status:
            source.availability_status = status
        for key in ("last_checked_at", "last_available_at"):
            if key in body:
                setattr(source, key, parse_time(body[key]))
        source.updated_at = utcnow()
        return source, [("Source.update", source_event(source, ""))]


def delete_source(store: Store, tenant: Tenant, source_id: int) -> list[Event]:
    """DELETE /sources/:id with the service's cascade order."""
    with store.lock:
        source = store.source(tenant, source_id)
        account = tenant.external_tenant
        apps = sorted((a for a in store.applications.values() if a.source_id == source.id), key=lambda a: a.id)
        app_ids = {a.id for a in apps}
        links = sorted(
            (x for x in store.application_authentications.values() if x.application_id in app_ids),
            key=lambda x: x.id,
        )
        endpoints = sorted((e for e in store.endpoints.values() if e.source_id == source.id), key=lambda e: e.id)
        auths = sorted((a for a in store.authentications.values() if a.source_id == source.id), key=lambda a: a.id)
        events: list[Event] = []
        events += [("ApplicationAuthentication.destroy", application_authentication_event(x, account)) for x in links]
        events += [("Application.destroy", application_event(a, account)) for a in apps]
        events += [("Endpoint.destroy", endpoint_event(e, account)) for e in endpoints]
        events.append(("Source.destroy", source_event(source, account)))
        events += [("Authentication.destroy", authentication_event(a, account)) for a in auths]
        for x in links:
            del store.application_authentications[x.id]
        for a in apps:
            del store.applications[a.id]
        for e in endpoints:
            del store.endpoints[e.id]
        for auth in auths:
            del store.authentications[auth.id]
        del store.sources[source.id]
        return events


def pause_source(store: Store, tenant: Tenant, source_id: int, pause: bool) -> list[Event]:
    """POST /sources/:id/pause or /unpause: the source and its applications."""
    with store.lock:
        source = store.source(tenant, source_id)
        now = utcnow()
        source.paused_at = now if pause else None
        source.updated_at = now
        events: list[Event] = [(f"Source.{'pause' if pause else 'unpause'}", source_event(source, ""))]
        apps = sorted((a for a in store.applications.values() if a.source_id == source.id), key=lambda a: a.id)
        return events + set_paused(apps, pause, now)
