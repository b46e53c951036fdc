"""Source endpoints (kept for authentications with resource_type Endpoint): record, forms and writes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from koku_devtools.platform_sources.authentications import authentication_event
from koku_devtools.platform_sources.errors import bad_request
from koku_devtools.platform_sources.events import Event
from koku_devtools.platform_sources.fields import (
    availability_status,
    event_time,
    rest_time,
    to_id,
    utcnow,
    without_empty,
)
from koku_devtools.platform_sources.tenants import Tenant

if TYPE_CHECKING:
    from koku_devtools.platform_sources.store import Store

_WRITABLE_FIELDS = (
    "role",
    "port",
    "default",
    "scheme",
    "host",
    "path",
    "verify_ssl",
    "certificate_authority",
    "receptor_node",
    "availability_status_error",
)


@dataclass
class Endpoint:
    """A source endpoint."""

    id: int
    tenant_id: int
    source_id: int
    created_at: datetime
    updated_at: datetime
    role: str | None = None
    port: int | None = None
    default: bool | None = None
    scheme: str | None = None
    host: str | None = None
    path: str | None = None
    verify_ssl: bool | None = None
    certificate_authority: str | None = None
    receptor_node: str | None = None
    availability_status: str | None = None
    availability_status_error: str = ""
    last_checked_at: datetime | None = None
    last_available_at: datetime | None = None
    paused_at: datetime | None = None


def render_endpoint(e: Endpoint) -> dict[str, Any]:
    """REST form of an endpoint (nulls omitted)."""
    return {
        "id": str(e.id),
        "created_at": rest_time(e.created_at),
        "updated_at": rest_time(e.updated_at),
        **without_empty(
            {
                "paused_at": rest_time(e.paused_at),
                "role": e.role,
                "port": e.port,
                "default": e.default,
                "scheme": e.scheme,
                "host": e.host,
                "path": e.path,
                "verify_ssl": e.verify_ssl,
                "certificate_authority": e.certificate_authority,
                "receptor_node": e.receptor_node,
                "availability_status": e.availability_status,
                "last_checked_at": rest_time(e.last_checked_at),
                "last_available_at": rest_time(e.last_available_at),
                "availability_status_error": e.availability_status_error,
            }
        ),
        "source_id": str(e.source_id),
    }


def endpoint_event(e: Endpoint, tenant: str) -> dict[str, Any]:
    """Kafka body of ``Endpoint.*``."""
    return {
        "id": e.id,
        "created_at": event_time(e.created_at),
        "updated_at": event_time(e.updated_at),
        "paused_at": event_time(e.paused_at),
        "role": e.role,
        "port": e.port,
        "default": e.default,
        "scheme": e.scheme,
        "host": e.host,
        "path": e.path,
        "verify_ssl": e.verify_ssl,
        "certificate_authority": e.certificate_authority,
        "receptor_node": e.receptor_node,
        "availability_status": e.availability_status or None,
        "last_checked_at": event_time(e.last_checked_at),
        "last_available_at": event_time(e.last_available_at),
        "availability_status_error": e.availability_status_error or None,
        "source_id": e.source_id,
        "tenant": tenant,
    }


def _field_values(body: dict[str, Any]) -> dict[str, Any]:
    values = {k: body[k] for k in _WRITABLE_FIELDS if k in body}
    if "port" in values and values["port"] is not None:
        try:
            values["port"] = int(values["port"])
        except (TypeError, ValueError):
            raise bad_request("invalid port") from None
    if "availability_status_error" in values:
        values["availability_status_error"] = values["availability_status_error"] or ""
    return values


def create_endpoint(store: Store, tenant: Tenant, body: dict[str, Any]) -> tuple[Endpoint, list[Event]]:
    """POST /endpoints."""
    with store.lock:
        if body.get("source_id") is None:
            raise bad_request("source_id is required")
        source_id = to_id(body["source_id"], "source_id")
        source = store.sources.get(source_id)
        if source is None or source.tenant_id != tenant.id:
            raise bad_request("source not found")
        now = utcnow()
        endpoint = Endpoint(store.new_id("endpoint"), tenant.id, source_id, now, now, **_field_values(body))
        endpoint.availability_status = availability_status(body)
        store.endpoints[endpoint.id] = endpoint
        return endpoint, [("Endpoint.create", endpoint_event(endpoint, ""))]


def update_endpoint(
    store: Store, tenant: Tenant, endpoint_id: int, body: dict[str, Any]
) -> tuple[Endpoint, list[Event]]:
    """PATCH /endpoints/:id."""
    with store.lock:
        endpoint = store.endpoint(tenant, endpoint_id)
        for key, value in _field_values(body).items():
            setattr(endpoint, key, value)
        status = availability_status(body)
        if status:
            endpoint.availability_status = status
        endpoint.updated_at = utcnow()
        return endpoint, [("Endpoint.update", endpoint_event(endpoint, ""))]


def delete_endpoint(store: Store, tenant: Tenant, endpoint_id: int) -> list[Event]:
    """DELETE /endpoints/:id and the authentications attached to it."""
    with store.lock:
        endpoint = store.endpoint(tenant, endpoint_id)
        account = tenant.external_tenant
        auths = sorted(
            (
                a
                for a in store.authentications.values()
                if a.resource_type == "Endpoint" and a.resource_id == endpoint.id
            ),
            key=lambda a: a.id,
        )
        events: list[Event] = [("Endpoint.destroy", endpoint_event(endpoint, account))]
        events += [("Authentication.destroy", authentication_event(a, account)) for a in auths]
        for auth in auths:
            del store.authentications[auth.id]
        del store.endpoints[endpoint.id]
        return events
