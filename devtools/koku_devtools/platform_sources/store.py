"""The stand-in's in-memory tables, their lock and id counters, and tenant-scoped lookups.

The writes live with their records (:mod:`.sources`, :mod:`.applications`,
:mod:`.authentications`, :mod:`.endpoints`, :mod:`.tenants`); each takes :attr:`Store.lock`
and returns the events it causes.
"""

from __future__ import annotations

import threading
from typing import Any

from koku_devtools.platform_sources.applications import Application
from koku_devtools.platform_sources.authentications import ApplicationAuthentication, Authentication
from koku_devtools.platform_sources.endpoints import Endpoint
from koku_devtools.platform_sources.errors import not_found
from koku_devtools.platform_sources.fields import utcnow
from koku_devtools.platform_sources.sources import Source
from koku_devtools.platform_sources.tenants import Tenant
from koku_devtools.platform_sources.type_catalog import (
    ApplicationType,
    SourceType,
    seeded_application_types,
    seeded_source_types,
)


class Store:
    """All stand-in data; every write holds :attr:`lock` (an ``RLock``).

    ``honor_uid`` keeps the ``uid`` a client sends for a new source (the service's default);
    without it every source gets a random one.
    """

    def __init__(self, *, honor_uid: bool = True) -> None:
        self.lock = threading.RLock()
        self.honor_uid = honor_uid
        now = utcnow()
        self.source_types: dict[int, SourceType] = seeded_source_types(now)
        self.application_types: dict[int, ApplicationType] = seeded_application_types(now)
        self._last_ids: dict[str, int] = {}
        self.tenants: dict[int, Tenant] = {}
        self.sources: dict[int, Source] = {}
        self.applications: dict[int, Application] = {}
        self.authentications: dict[int, Authentication] = {}
        self.application_authentications: dict[int, ApplicationAuthentication] = {}
        self.endpoints: dict[int, Endpoint] = {}

    def new_id(self, kind: str) -> int:
        """The next id of ``kind`` (ids are never reused, not even after :meth:`clear`)."""
        self._last_ids[kind] = self._last_ids.get(kind, 0) + 1
        return self._last_ids[kind]

    def clear(self) -> None:
        """Drop tenants and every tenant-owned row (seeds stay; ids keep counting)."""
        with self.lock:
            for table in (
                self.tenants,
                self.sources,
                self.applications,
                self.authentications,
                self.application_authentications,
                self.endpoints,
            ):
                table.clear()

    def drop_authentication(self, auth_id: int) -> None:
        """Remove an authentication and its application links (which cause no event of their own)."""
        with self.lock:
            for link in [x for x in self.application_authentications.values() if x.authentication_id == auth_id]:
                del self.application_authentications[link.id]
            del self.authentications[auth_id]

    # ------------------------------------------------------------------ seeded types

    def source_type(self, type_id: int) -> SourceType:
        """A source type by id, or 404."""
        try:
            return self.source_types[type_id]
        except KeyError:
            raise not_found("source type") from None

    def application_type(self, type_id: int) -> ApplicationType:
        """An application type by id, or 404."""
        try:
            return self.application_types[type_id]
        except KeyError:
            raise not_found("application type") from None

    def application_type_by_name(self, name: str) -> ApplicationType | None:
        """An application type by name."""
        return next((t for t in self.application_types.values() if t.name == name), None)

    # ------------------------------------------------------------------ tenant-owned rows

    def owned(self, table: dict[int, Any], tenant: Tenant) -> list[Any]:
        """Rows of ``table`` visible to ``tenant``."""
        with self.lock:
            return [row for row in table.values() if row.tenant_id == tenant.id]

    def _owned_row(self, table: dict[int, Any], tenant: Tenant, row_id: int, kind: str) -> Any:
        row = table.get(row_id)
        if row is None or row.tenant_id != tenant.id:
            raise not_found(kind)
        return row

    def source(self, tenant: Tenant, source_id: int) -> Source:
        """The tenant's source, or 404 ``source not found``."""
        return self._owned_row(self.sources, tenant, source_id, "source")

    def application(self, tenant: Tenant, app_id: int) -> Application:
        """The tenant's application, or 404."""
        return self._owned_row(self.applications, tenant, app_id, "application")

    def authentication(self, tenant: Tenant, auth_id: int) -> Authentication:
        """The tenant's authentication, or 404."""
        return self._owned_row(self.authentications, tenant, auth_id, "authentication")

    def application_authentication(self, tenant: Tenant, link_id: int) -> ApplicationAuthentication:
        """The tenant's application authentication, or 404."""
        return self._owned_row(self.application_authentications, tenant, link_id, "application authentication")

    def endpoint(self, tenant: Tenant, endpoint_id: int) -> Endpoint:
        """The tenant's endpoint, or 404."""
        return self._owned_row(self.endpoints, tenant, endpoint_id, "endpoint")
