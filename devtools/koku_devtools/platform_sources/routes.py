"""The route table: which handler answers a method and path, and what access it needs.

Access: ``open`` (no tenant), ``tenant`` (reads of the caller's tenant), ``write`` (tenant writes:
PSK or identity required), ``internal`` (all tenants: PSK or identity required).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from koku_devtools.platform_sources import handlers as h
from koku_devtools.platform_sources.errors import ApiError
from koku_devtools.platform_sources.fields import to_id

#: ``/api/sources/<version>`` (public) or ``/internal/<version>``, then the route path.
API_PREFIX = re.compile(
    r"^(?P<prefix>/api/sources/(?:v1\.0|v2\.0|v3\.0|v3\.1|v1|v2|v3)|/internal/(?:v1\.0|v2\.0))"
    r"(?:/(?P<rest>.*))?$"
)


@dataclass(frozen=True)
class Route:
    """One method and path pattern of the public (``api``) or ``internal`` API."""

    method: str
    scope: str
    pattern: re.Pattern[str]
    handler: h.Handler
    access: str


_TABLE: list[tuple[str, str, str, h.Handler, str]] = [
    ("GET", "api", "source_types", h.list_source_types, "open"),
    ("GET", "api", "source_types/{id}", h.show_source_type, "open"),
    ("GET", "api", "source_types/{id}/sources", h.source_type_sources, "tenant"),
    ("GET", "api", "application_types", h.list_application_types, "open"),
    ("GET", "api", "application_types/{id}", h.show_application_type, "open"),
    ("GET", "api", "application_types/{id}/sources", h.application_type_sources, "tenant"),
    ("GET", "api", "sources", h.list_sources, "tenant"),
    ("POST", "api", "sources", h.create_source, "write"),
    ("GET", "api", "sources/{id}", h.show_source, "tenant"),
    ("PATCH", "api", "sources/{id}", h.update_source, "write"),
    ("DELETE", "api", "sources/{id}", h.delete_source, "write"),
    ("POST", "api", "sources/{id}/pause", h.pause_source, "write"),
    ("POST", "api", "sources/{id}/unpause", h.unpause_source, "write"),
    ("POST", "api", "sources/{id}/check_availability", h.check_availability, "tenant"),
    ("GET", "api", "sources/{id}/applications", h.source_applications, "tenant"),
    ("GET", "api", "sources/{id}/application_types", h.source_application_types, "tenant"),
    ("GET", "api", "sources/{id}/authentications", h.source_authentications, "tenant"),
    ("GET", "api", "sources/{id}/endpoints", h.source_endpoints, "tenant"),
    ("GET", "api", "applications", h.list_applications, "tenant"),
    ("POST", "api", "applications", h.create_application, "write"),
    ("GET", "api", "applications/{id}", h.show_application, "tenant"),
    ("PATCH", "api", "applications/{id}", h.update_application, "write"),
    ("DELETE", "api", "applications/{id}", h.delete_application, "write"),
    ("POST", "api", "applications/{id}/pause", h.pause_application, "write"),
    ("POST", "api", "applications/{id}/unpause", h.unpause_application, "write"),
    ("GET", "api", "applications/{id}/authentications", h.application_authentications_of, "tenant"),
    ("GET", "api", "authentications", h.list_authentications, "tenant"),
    ("POST", "api", "authentications", h.create_authentication, "write"),
    ("GET", "api", "authentications/{id}", h.show_authentication, "tenant"),
    ("PATCH", "api", "authentications/{id}", h.update_authentication, "write"),
    ("DELETE", "api", "authentications/{id}", h.delete_authentication, "write"),
    ("GET", "api", "application_authentications", h.list_application_authentications, "tenant"),
    ("POST", "api", "application_authentications", h.create_application_authentication, "write"),
    ("GET", "api", "application_authentications/{id}", h.show_application_authentication, "tenant"),
    ("DELETE", "api", "application_authentications/{id}", h.delete_application_authentication, "write"),
    (
        "GET",
        "api",
        "application_authentications/{id}/authentications",
        h.application_authentication_authentications,
        "tenant",
    ),
    ("GET", "api", "endpoints", h.list_endpoints, "tenant"),
    ("POST", "api", "endpoints", h.create_endpoint, "write"),
    ("GET", "api", "endpoints/{id}", h.show_endpoint, "tenant"),
    ("PATCH", "api", "endpoints/{id}", h.update_endpoint, "write"),
    ("DELETE", "api", "endpoints/{id}", h.delete_endpoint, "write"),
    ("GET", "api", "endpoints/{id}/authentications", h.endpoint_authentications, "tenant"),
    ("GET", "internal", "authentications/{id}", h.internal_authentication, "write"),
    ("GET", "internal", "sources", h.internal_sources, "internal"),
]
ROUTES: tuple[Route, ...] = tuple(
    Route(method, scope, re.compile(pattern.replace("{id}", "(?P<id>[^/]+)")), handler, access)
    for method, scope, pattern, handler, access in _TABLE
)


def find_route(method: str, scope: str, rest: str) -> tuple[Route, dict[str, int]]:
    """The route answering ``method`` on ``rest`` (the path after the API prefix) and its ids;
    404 for an unknown path, 405 for a known path with another method."""
    rest = rest.rstrip("/")
    candidates = [(r, m) for r in ROUTES if r.scope == scope and (m := r.pattern.fullmatch(rest))]
    if not candidates:
        raise ApiError(404, "Not Found")
    chosen = next(((r, m) for r, m in candidates if r.method == method), None)
    if chosen is None:
        raise ApiError(405, "Method Not Allowed")
    route, found = chosen
    return route, {name: to_id(value, "id") for name, value in found.groupdict().items()}
