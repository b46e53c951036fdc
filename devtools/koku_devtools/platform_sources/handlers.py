"""Route handlers of the public and internal API: each reads a :class:`Call` and returns a :class:`Reply`."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from koku_devtools.platform_sources import applications, authentications, endpoints, sources
from koku_devtools.platform_sources.applications import render_application
from koku_devtools.platform_sources.authentications import (
    render_application_authentication,
    render_authentication,
    render_authentication_internal,
)
from koku_devtools.platform_sources.endpoints import render_endpoint
from koku_devtools.platform_sources.events import Event
from koku_devtools.platform_sources.listing import ListQuery, collection_document, parse_list_query, select
from koku_devtools.platform_sources.sources import render_source
from koku_devtools.platform_sources.store import Store
from koku_devtools.platform_sources.tenants import RequestIdentity, Tenant
from koku_devtools.platform_sources.type_catalog import (
    COST_MANAGEMENT,
    render_application_type,
    render_source_type,
)


@dataclass
class Call:
    """What a route handler gets."""

    caller: RequestIdentity
    tenant: Tenant | None
    params: dict[str, int]
    path: str
    query: list[tuple[str, str]]
    body: Any
    headers: dict[str, str]

    @property
    def owner(self) -> Tenant:
        """The tenant of a tenant-scoped route (always set for those)."""
        assert self.tenant is not None
        return self.tenant

    @property
    def id(self) -> int:
        """The ``{id}`` of the route."""
        return self.params["id"]


@dataclass
class Reply:
    """What a route handler returns."""

    status: int
    payload: Any = None
    events: list[Event] = field(default_factory=list)


Handler = Callable[[Store, Call], Reply]


def _collection(
    store: Store,
    call: Call,
    table: str,
    rows: Iterable[Any],
    render: Callable[[Any], dict[str, Any]],
    *,
    fixed: bool = False,
) -> Reply:
    """One page of ``rows``; ``fixed`` lists ignore the query string (the service's sub-collections)."""
    query = ListQuery() if fixed else parse_list_query(call.query)
    related: dict[str, Callable[[Any], Any]] = {}
    if table == "sources":
        related["source_type"] = lambda s: store.source_types[s.source_type_id]
    elif table == "applications":
        related["application_type"] = lambda a: store.application_types[a.application_type_id]
    page, count = select(rows, table, query, related)
    document = collection_document(call.path, [] if fixed else call.query, query, [render(r) for r in page], count)
    return Reply(200, document)


# --------------------------------------------------------------------------- source and application types


def list_source_types(store: Store, call: Call) -> Reply:
    return _collection(store, call, "source_types", store.source_types.values(), render_source_type)


def show_source_type(store: Store, call: Call) -> Reply:
    return Reply(200, render_source_type(store.source_type(call.id)))


def source_type_sources(store: Store, call: Call) -> Reply:
    type_id = store.source_type(call.id).id
    rows = [s for s in store.owned(store.sources, call.owner) if s.source_type_id == type_id]
    return _collection(store, call, "sources", rows, render_source)


def list_application_types(store: Store, call: Call) -> Reply:
    return _collection(store, call, "application_types", store.application_types.values(), render_application_type)


def show_application_type(store: Store, call: Call) -> Reply:
    return Reply(200, render_application_type(store.application_type(call.id)))


def application_type_sources(store: Store, call: Call) -> Reply:
    type_id = store.application_type(call.id).id
    with_app = {a.source_id for a in store.applications.values() if a.application_type_id == type_id}
    rows = [s for s in store.owned(store.sources, call.owner) if s.id in with_app]
    return _collection(store, call, "sources", rows, render_source)


# --------------------------------------------------------------------------- sources


def list_sources(store: Store, call: Call) -> Reply:
    return _collection(store, call, "sources", store.owned(store.sources, call.owner), render_source)


def show_source(store: Store, call: Call) -> Reply:
    return Reply(200, render_source(store.source(call.owner, call.id)))


def create_source(store: Store, call: Call) -> Reply:
    source, events = sources.create_source(store, call.owner, call.body)
    return Reply(201, render_source(source), events)


def update_source(store: Store, call: Call) -> Reply:
    source, events = sources.update_source(store, call.owner, call.id, call.body)
    return Reply(200, render_source(source), events)


def delete_source(store: Store, call: Call) -> Reply:
    return Reply(204, None, sources.delete_source(store, call.owner, call.id))


def pause_source(store: Store, call: Call) -> Reply:
    return Reply(204, None, sources.pause_source(store, call.owner, call.id, True))


def unpause_source(store: Store, call: Call) -> Reply:
    return Reply(204, None, sources.pause_source(store, call.owner, call.id, False))


def check_availability(store: Store, call: Call) -> Reply:
    store.source(call.owner, call.id)
    return Reply(202, {})


def source_applications(store: Store, call: Call) -> Reply:
    source = store.source(call.owner, call.id)
    rows = [a for a in store.applications.values() if a.source_id == source.id]
    return _collection(store, call, "applications", rows, render_application)


def source_application_types(store: Store, call: Call) -> Reply:
    source = store.source(call.owner, call.id)
    type_ids = {a.application_type_id for a in store.applications.values() if a.source_id == source.id}
    rows = [t for t in store.application_types.values() if t.id in type_ids]
    return _collection(store, call, "application_types", rows, render_application_type)


def source_authentications(store: Store, call: Call) -> Reply:
    source = store.source(call.owner, call.id)
    rows = [a for a in store.authentications.values() if a.source_id == source.id]
    return _collection(store, call, "authentications", rows, render_authentication, fixed=True)


def source_endpoints(store: Store, call: Call) -> Reply:
    source = store.source(call.owner, call.id)
    rows = [e for e in store.endpoints.values() if e.source_id == source.id]
    return _collection(store, call, "endpoints", rows, render_endpoint)


# --------------------------------------------------------------------------- applications


def list_applications(store: Store, call: Call) -> Reply:
    return _collection(store, call, "applications", store.owned(store.applications, call.owner), render_application)


def show_application(store: Store, call: Call) -> Reply:
    return Reply(200, render_application(store.application(call.owner, call.id)))


def create_application(store: Store, call: Call) -> Reply:
    app, events = applications.create_application(store, call.owner, call.body)
    return Reply(201, render_application(app), events)


def update_application(store: Store, call: Call) -> Reply:
    app, events = applications.update_application(store, call.owner, call.id, call.body)
    return Reply(200, render_application(app), events)


def delete_application(store: Store, call: Call) -> Reply:
    return Reply(204, None, applications.delete_application(store, call.owner, call.id))


def pause_application(store: Store, call: Call) -> Reply:
    return Reply(204, None, applications.pause_application(store, call.owner, call.id, True))


def unpause_application(store: Store, call: Call) -> Reply:
    return Reply(204, None, applications.pause_application(store, call.owner, call.id, False))


def application_authentications_of(store: Store, call: Call) -> Reply:
    app = store.application(call.owner, call.id)
    rows = [a for a in store.authentications.values() if a.resource_type == "Application" and a.resource_id == app.id]
    return _collection(store, call, "authentications", rows, render_authentication, fixed=True)


# --------------------------------------------------------------------------- authentications


def list_authentications(store: Store, call: Call) -> Reply:
    rows = store.owned(store.authentications, call.owner)
    return _collection(store, call, "authentications", rows, render_authentication)


def show_authentication(store: Store, call: Call) -> Reply:
    return Reply(200, render_authentication(store.authentication(call.owner, call.id)))


def create_authentication(store: Store, call: Call) -> Reply:
    auth, events = authentications.create_authentication(store, call.owner, call.body)
    return Reply(201, render_authentication(auth), events)


def update_authentication(store: Store, call: Call) -> Reply:
    auth, events = authentications.update_authentication(store, call.owner, call.id, call.body)
    return Reply(200, render_authentication(auth), events)


def delete_authentication(store: Store, call: Call) -> Reply:
    return Reply(204, None, authentications.delete_authentication(store, call.owner, call.id))


def internal_authentication(store: Store, call: Call) -> Reply:
    """The internal form, with the password when ``expose_encrypted_attribute[]=password`` asks for it."""
    auth = store.authentication(call.owner, call.id)
    exposed = any(
        re.findall(r"\w+", k)[:1] == ["expose_encrypted_attribute"] and v == "password" for k, v in call.query
    )
    return Reply(200, render_authentication_internal(auth) if exposed else render_authentication(auth))


# --------------------------------------------------------------------------- application authentications


def list_application_authentications(store: Store, call: Call) -> Reply:
    rows = store.owned(store.application_authentications, call.owner)
    return _collection(store, call, "application_authentications", rows, render_application_authentication)


def show_application_authentication(store: Store, call: Call) -> Reply:
    return Reply(200, render_application_authentication(store.application_authentication(call.owner, call.id)))


def create_application_authentication(store: Store, call: Call) -> Reply:
    link, events = authentications.create_application_authentication(store, call.owner, call.body)
    return Reply(201, render_application_authentication(link), events)


def delete_application_authentication(store: Store, call: Call) -> Reply:
    return Reply(204, None, authentications.delete_application_authentication(store, call.owner, call.id))


def application_authentication_authentications(store: Store, call: Call) -> Reply:
    link = store.application_authentication(call.owner, call.id)
    rows = [a for a in store.authentications.values() if a.id == link.authentication_id]
    return _collection(store, call, "authentications", rows, render_authentication, fixed=True)


# --------------------------------------------------------------------------- endpoints


def list_endpoints(store: Store, call: Call) -> Reply:
    return _collection(store, call, "endpoints", store.owned(store.endpoints, call.owner), render_endpoint)


def show_endpoint(store: Store, call: Call) -> Reply:
    return Reply(200, render_endpoint(store.endpoint(call.owner, call.id)))


def create_endpoint(store: Store, call: Call) -> Reply:
    endpoint, events = endpoints.create_endpoint(store, call.owner, call.body)
    return Reply(201, render_endpoint(endpoint), events)


def update_endpoint(store: Store, call: Call) -> Reply:
    endpoint, events = endpoints.update_endpoint(store, call.owner, call.id, call.body)
    return Reply(200, render_endpoint(endpoint), events)


def delete_endpoint(store: Store, call: Call) -> Reply:
    return Reply(204, None, endpoints.delete_endpoint(store, call.owner, call.id))


def endpoint_authentications(store: Store, call: Call) -> Reply:
    endpoint = store.endpoint(call.owner, call.id)
    rows = [a for a in store.authentications.values() if a.resource_type == "Endpoint" and a.resource_id == endpoint.id]
    return _collection(store, call, "authentications", rows, render_authentication, fixed=True)


# --------------------------------------------------------------------------- internal sources


def internal_sources(store: Store, call: Call) -> Reply:
    """All tenants' sources in the compact internal form (``x-rh-sources-skip-empty-sources`` drops
    those with no application other than cost management)."""
    rows = list(store.sources.values())
    if call.headers.get("x-rh-sources-skip-empty-sources", "").lower() == "true":
        cost = store.application_type_by_name(COST_MANAGEMENT)
        cost_id = cost.id if cost else -1
        keep = {a.source_id for a in store.applications.values() if a.application_type_id != cost_id}
        rows = [s for s in rows if s.id in keep]

    def render(s: Any) -> dict[str, Any]:
        tenant = store.tenants[s.tenant_id]
        return {
            "id": str(s.id),
            "availability_status": s.availability_status or "",
            "tenant": tenant.external_tenant,
            "org_id": tenant.org_id,
        }

    return _collection(store, call, "sources", rows, render)
