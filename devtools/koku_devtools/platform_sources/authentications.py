"""Authentications (the secrets) and their links to applications: records, REST and event forms, writes.

Passwords are stored but only :func:`render_authentication_internal` (the internal API asked to
expose them) shows them; events and the public REST form never do.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from koku_devtools.platform_sources.errors import bad_request
from koku_devtools.platform_sources.events import Event
from koku_devtools.platform_sources.fields import (
    ZERO_TIME,
    availability_status,
    event_time,
    optional_object,
    optional_str,
    rest_time,
    to_id,
    utcnow,
    without_empty,
)
from koku_devtools.platform_sources.tenants import Tenant

if TYPE_CHECKING:
    from koku_devtools.platform_sources.store import Store

RESOURCE_TYPES = {"source": "Source", "endpoint": "Endpoint", "application": "Application"}
_EDITABLE_FIELDS = frozenset(
    {"name", "authtype", "username", "password", "extra", "availability_status", "availability_status_error"}
)


@dataclass
class Authentication:
    """An authentication; ``password`` never leaves except via the internal form."""

    id: int
    tenant_id: int
    source_id: int
    resource_type: str
    resource_id: int
    authtype: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    name: str | None = None
    extra: dict[str, Any] | None = None
    availability_status: str | None = "in_progress"
    availability_status_error: str = ""
    last_checked_at: datetime | None = None
    last_available_at: datetime | None = None


@dataclass
class ApplicationAuthentication:
    """A link between an application and an authentication."""

    id: int
    tenant_id: int
    application_id: int
    authentication_id: int
    created_at: datetime
    updated_at: datetime
    paused_at: datetime | None = None


# --------------------------------------------------------------------------- forms


def render_authentication(a: Authentication) -> dict[str, Any]:
    """Public REST form of an authentication: never a password nor a source_id."""
    data: dict[str, Any] = {"id": str(a.id)}
    if a.name:
        data["name"] = a.name
    data["authtype"] = a.authtype
    data["username"] = a.username or ""
    if a.extra is not None:
        data["extra"] = copy.deepcopy(a.extra)
    data.update(
        without_empty(
            {
                "availability_status": a.availability_status,
                "availability_status_error": a.availability_status_error,
            }
        )
    )
    data["resource_type"] = a.resource_type
    data["resource_id"] = str(a.resource_id)
    return data


def render_authentication_internal(a: Authentication) -> dict[str, Any]:
    """Internal form (``expose_encrypted_attribute[]=password``), with the password."""
    data: dict[str, Any] = {
        "id": str(a.id),
        "created_at": ZERO_TIME,
        "name": a.name or "",
        "authtype": a.authtype,
        "username": a.username or "",
    }
    if a.password:
        data["password"] = a.password
    data["extra"] = copy.deepcopy(a.extra) if a.extra is not None else None
    data["version"] = ""
    if a.availability_status:
        data["availability_status"] = a.availability_status
    data["resource_type"] = a.resource_type
    data["resource_id"] = str(a.resource_id)
    return data


def render_application_authentication(a: ApplicationAuthentication) -> dict[str, Any]:
    """REST form of an application authentication."""
    return {
        "id": str(a.id),
        "created_at": rest_time(a.created_at),
        "updated_at": rest_time(a.updated_at),
        **without_empty({"paused_at": rest_time(a.paused_at)}),
        "application_id": str(a.application_id),
        "authentication_id": str(a.authentication_id),
    }


def authentication_event(a: Authentication, tenant: str) -> dict[str, Any]:
    """Kafka body of ``Authentication.*`` (string id, never a password)."""
    return {
        "id": str(a.id),
        "created_at": ZERO_TIME,
        "name": a.name or "",
        "authtype": a.authtype,
        "username": a.username,
        "extra": copy.deepcopy(a.extra),
        "version": "",
        "availability_status": a.availability_status or None,
        "last_checked_at": event_time(a.last_checked_at),
        "last_available_at": event_time(a.last_available_at),
        "availability_status_error": a.availability_status_error or None,
        "resource_type": a.resource_type,
        "resource_id": a.resource_id,
        "source_id": a.source_id,
        "tenant": tenant,
    }


def application_authentication_event(a: ApplicationAuthentication, tenant: str) -> dict[str, Any]:
    """Kafka body of ``ApplicationAuthentication.*``."""
    return {
        "id": a.id,
        "created_at": event_time(a.created_at),
        "updated_at": event_time(a.updated_at),
        "paused_at": event_time(a.paused_at),
        "application_id": a.application_id,
        "authentication_id": a.authentication_id,
        "tenant": tenant,
    }


# --------------------------------------------------------------------------- authentications


def _required_authtype(body: dict[str, Any]) -> str:
    authtype = body.get("authtype")
    if not isinstance(authtype, str) or not authtype:
        raise bad_request("authtype is required")
    return authtype


def _resource_source_id(store: Store, tenant: Tenant, resource_type: str, resource_id: int) -> int:
    """The source id of the resource an authentication is attached to; 400 when it is not the tenant's."""
    if resource_type == "Source":
        found: Any = store.sources.get(resource_id)
    elif resource_type == "Application":
        found = store.applications.get(resource_id)
    else:
        found = store.endpoints.get(resource_id)
    if found is None or found.tenant_id != tenant.id:
        raise bad_request(f"{resource_type.lower()} not found")
    return found.id if resource_type == "Source" else found.source_id


def create_authentication(store: Store, tenant: Tenant, body: dict[str, Any]) -> tuple[Authentication, list[Event]]:
    """POST /authentications: source_id derived from the resource."""
    with store.lock:
        authtype = _required_authtype(body)
        raw_type = body.get("resource_type")
        resource_type = RESOURCE_TYPES.get(str(raw_type).lower()) if raw_type is not None else None
        if resource_type is None:
            raise bad_request("resource_type must be one of Source, Endpoint, Application")
        if body.get("resource_id") is None:
            raise bad_request("resource_id is required")
        resource_id = to_id(body["resource_id"], "resource_id")
        source_id = _resource_source_id(store, tenant, resource_type, resource_id)
        auth = Authentication(
            id=store.new_id("authentication"),
            tenant_id=tenant.id,
            source_id=source_id,
            resource_type=resource_type,
            resource_id=resource_id,
            authtype=authtype,
            username=optional_str(body, "username"),
            password=optional_str(body, "password"),
            name=optional_str(body, "name"),
            extra=optional_object(body, "extra"),
            availability_status=availability_status(body) or "in_progress",
            availability_status_error=optional_str(body, "availability_status_error") or "",
        )
        store.authentications[auth.id] = auth
        return auth, [("Authentication.create", authentication_event(auth, tenant.external_tenant))]


def update_authentication(
    store: Store, tenant: Tenant, auth_id: int, body: dict[str, Any]
) -> tuple[Authentication, list[Event]]:
    """PATCH /authentications/:id."""
    with store.lock:
        auth = store.authentication(tenant, auth_id)
        unknown = set(body) - _EDITABLE_FIELDS
        if unknown:
            raise bad_request(f"cannot update {', '.join(sorted(unknown))}")
        status = availability_status(body)
        for key in ("name", "username", "password"):
            if key in body:
                setattr(auth, key, optional_str(body, key))
        if "authtype" in body:
            auth.authtype = _required_authtype(body)
        if "extra" in body:
            auth.extra = optional_object(body, "extra")
        if status:
            auth.availability_status = status
        if "availability_status_error" in body:
            auth.availability_status_error = optional_str(body, "availability_status_error") or ""
        return auth, [("Authentication.update", authentication_event(auth, ""))]


def delete_authentication(store: Store, tenant: Tenant, auth_id: int) -> list[Event]:
    """DELETE /authentications/:id (its application links go too, silently)."""
    with store.lock:
        auth = store.authentication(tenant, auth_id)
        store.drop_authentication(auth.id)
        return [("Authentication.destroy", authentication_event(auth, tenant.external_tenant))]


# --------------------------------------------------------------------------- application authentications


def create_application_authentication(
    store: Store, tenant: Tenant, body: dict[str, Any]
) -> tuple[ApplicationAuthentication, list[Event]]:
    """POST /application_authentications."""
    with store.lock:
        if body.get("application_id") is None or body.get("authentication_id") is None:
            raise bad_request("application_id and authentication_id are required")
        app_id = to_id(body["application_id"], "application_id")
        auth_id = to_id(body["authentication_id"], "authentication_id")
        app = store.applications.get(app_id)
        auth = store.authentications.get(auth_id)
        if app is None or app.tenant_id != tenant.id:
            raise bad_request("application not found")
        if auth is None or auth.tenant_id != tenant.id:
            raise bad_request("authentication not found")
        if any(
            x.application_id == app_id and x.authentication_id == auth_id
            for x in store.application_authentications.values()
        ):
            raise bad_request("application authentication already exists")
        now = utcnow()
        link_id = store.new_id("application_authentication")
        link = ApplicationAuthentication(link_id, tenant.id, app_id, auth_id, now, now)
        store.application_authentications[link.id] = link
        event = application_authentication_event(link, tenant.external_tenant)
        return link, [("ApplicationAuthentication.create", event)]


def delete_application_authentication(store: Store, tenant: Tenant, link_id: int) -> list[Event]:
    """DELETE /application_authentications/:id."""
    with store.lock:
        link = store.application_authentication(tenant, link_id)
        del store.application_authentications[link.id]
        event = application_authentication_event(link, tenant.external_tenant)
        return [("ApplicationAuthentication.destroy", event)]
