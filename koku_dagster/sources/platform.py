"""A cached view of Platform Sources for one batch of events.

Within a batch, several events of one source ask for the same details; each distinct
question is asked once. Every event of the batch was published before the batch was read,
so an answer fetched while applying it is at least as new as any later event of the batch:
nothing needs to be forgotten within a batch. Errors are not cached, so a retry asks again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from koku_dagster.providers import COST_AUTHTYPES
from koku_dagster.sources.client import SourcesClient
from koku_dagster.sources.errors import SourcesError
from koku_dagster.sources.model import Application, AuthenticationRecord, SourceDetails, Tenant

T = TypeVar("T")
log = logging.getLogger(__name__)


class PlatformView:
    """What the event processor asks Platform Sources, memoised per batch."""

    def __init__(self, client: SourcesClient, cost_type_id: int, type_names: dict[int, str] | None = None) -> None:
        self.client = client
        self.cost_type_id = cost_type_id
        self._cache: dict[tuple[object, ...], object] = {}
        self._type_names = type_names if type_names is not None else {}
        self._lock = threading.Lock()
        self._type_lock = threading.Lock()
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

    def prefetch(self, sources_by_tenant: dict[Tenant, list[int]], chunk: int = 100, workers: int = 1) -> int:
        """Answer the batch's usual questions with a few list calls per tenant; return the calls made.

        Fills the cache for sources found in the lists (details, cost application, attachment,
        authentications attached to the application). Anything not found is asked per source
        later, exactly as without prefetching, so "source not found" and other answers keep
        their meaning. A failing list call is only logged: the per-source calls then run.
        Chunks of ``chunk`` sources are asked by up to ``workers`` threads at once.
        """
        tasks = [
            (tenant, sorted(set(ids[start : start + chunk])))
            for tenant, ids in sources_by_tenant.items()
            for start in range(0, len(ids), chunk)
        ]
        if workers <= 1 or len(tasks) <= 1:
            return sum(self._prefetch_part(tenant, part) for tenant, part in tasks)
        with ThreadPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
            return sum(pool.map(lambda task: self._prefetch_part(*task), tasks))

    def _prefetch_part(self, tenant: Tenant, part: list[int]) -> int:
        try:
            apps = self.client.applications_by_source(part, self.cost_type_id, tenant)
            details = self.client.sources_by_id(part, tenant)
            auths = (
                self.client.authentications_by_application(
                    sorted(a.id for a in apps.values()), sorted(COST_AUTHTYPES.values()), tenant
                )
                if apps
                else {}
            )
        except SourcesError as exc:
            log.info("prefetch skipped for %s sources: %s", len(part), exc)
            return 0
        calls = 3 if apps else 2
        with self._lock:
            for source_id in part:
                app = apps.get(source_id)
                self._cache[("application", source_id)] = app
                self._cache[("attached", source_id)] = app is not None
                if source_id in details:
                    self._cache[("details", source_id)] = details[source_id]
                for authtype in COST_AUTHTYPES.values():
                    found = auths.get((app.id, authtype)) if app else None
                    if found is not None:
                        self._cache[("auth", source_id, authtype)] = found
            self.calls += calls
        return calls

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
        with self._type_lock:  # asked once, even when many workers need it at the same moment
            if type_id not in self._type_names:
                self._type_names[type_id] = self.client.source_type_name(type_id)
                with self._lock:
                    self.calls += 1
            return self._type_names[type_id]

    def application(self, source_id: int, tenant: Tenant) -> Application | None:
        return self._memo(
            ("application", source_id), lambda: self.client.application(source_id, self.cost_type_id, tenant)
        )

    def authentication(self, source_id: int, authtype: str, tenant: Tenant) -> AuthenticationRecord | None:
        return self._memo(
            ("auth", source_id, authtype), lambda: self.client.authentication(source_id, authtype, tenant)
        )

    def authentication_password(self, source_id: int, auth_id: int, tenant: Tenant) -> str | None:
        return self._memo(
            ("password", source_id, auth_id), lambda: self.client.authentication_password(auth_id, tenant)
        )
