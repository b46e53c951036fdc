"""A cached view of Platform Sources for one batch of events.

Within a batch, several events of one source ask for the same details; each distinct
question is asked once. Every event of the batch was published before the batch was read,
so an answer fetched while applying it is at least as new as any later event of the batch:
nothing needs to be forgotten within a batch. Errors are not cached, so a retry asks again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from koku_dagster.sources.client import SourcesClient
from koku_dagster.sources.model import Application, AuthenticationRecord, SourceDetails, Tenant

T = TypeVar("T")


class PlatformView:
    """What the event processor asks Platform Sources, memoised per batch."""

    def __init__(self, client: SourcesClient, cost_type_id: int, type_names: dict[int, str] | None = None) -> None:
        self.client = client
        self.cost_type_id = cost_type_id
        self._cache: dict[tuple[object, ...], object] = {}
        self._type_names = type_names if type_names is not None else {}
        self._lock = threading.Lock()
        self.calls = 0

    def _memo(self, key: tuple[object, ...], fetch: Callable[[], T]) -> T:
        with self._lock:
            if key in self._cache:
                return self._cache[key]  # type: ignore[return-value]
        value = fetch()
        with self._lock:
            self.calls += 1
            self._cache[key] = value
        return value

    def known_application_id(self, source_id: int) -> int | None:
        """The cost application's id, if this batch fetched it."""
        with self._lock:
            app = self._cache.get(("application", source_id))
        return app.id if isinstance(app, Application) else None

    def is_cost_management_source(self, source_id: int, tenant: Tenant) -> bool:
        return self._memo(
            ("attached", source_id),
            lambda: self.client.is_cost_management_source(self.cost_type_id, source_id, tenant),
        )

    def source_details(self, source_id: int, tenant: Tenant) -> SourceDetails:
        return self._memo(("details", source_id), lambda: self.client.source_details(source_id, tenant))

    def source_type_name(self, type_id: int) -> str:
        with self._lock:
            if type_id in self._type_names:
                return self._type_names[type_id]
        name = self.client.source_type_name(type_id)
        with self._lock:
            self._type_names[type_id] = name
        return name

    def application(self, source_id: int, tenant: Tenant) -> Application | None:
        return self._memo(
            ("application", source_id), lambda: self.client.application(source_id, self.cost_type_id, tenant)
        )

    def authentication(self, source_id: int, authtype: str, tenant: Tenant) -> AuthenticationRecord | None:
        return self._memo(
            ("auth", source_id, authtype), lambda: self.client.authentication(source_id, authtype, tenant)
        )

    def authentication_password(self, source_id: int, auth_id: str, tenant: Tenant) -> str | None:
        return self._memo(
            ("password", source_id, auth_id), lambda: self.client.authentication_password(auth_id, tenant)
        )
