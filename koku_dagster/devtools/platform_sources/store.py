"""Thread-safe in-memory data of the Platform Sources stand-in.

Holds tenants, seeded source and application types, and the tenant-owned resources (sources,
applications, authentications, application authentications, endpoints). Every write returns the
events it causes as ``(event_type, body)`` pairs, bodies already in the Kafka event form.
Passwords are stored but only :func:`render_authentication_internal` shows them.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

COST_MANAGEMENT = "/insights/platform/cost-management"
AVAILABILITY_STATUSES = frozenset({"available", "in_progress", "partially_available", "unavailable"})
APP_CREATION_WORKFLOWS = frozenset({"manual_configuration", "account_authorization"})
RESOURCE_TYPES = {"source": "Source", "endpoint": "Endpoint", "application": "Application"}
ZERO_TIME = "0001-01-01T00:00:00Z"

Event = tuple[str, dict[str, Any]]


class ApiError(Exception):
    """An error answered with the Platform Sources error document."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def not_found(kind: str) -> ApiError:
    """404 with the service's ``"<type> not found"`` text."""
    return ApiError(404, f"{kind} not found")


def bad_request(message: str) -> ApiError:
    """400 with the service's ``"bad request: ..."`` text."""
    return ApiError(400, f"bad request: {message}")


def utcnow() -> datetime:
    """The current time in UTC, to the second."""
    return datetime.now(UTC).replace(microsecond=0)


def rest_time(value: datetime | None) -> str | None:
    """RFC 3339 as in REST responses."""
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def event_time(value: datetime | None) -> str | None:
    """``YYYY-MM-DD hh:mm:ss UTC`` as in Kafka event bodies."""
    return None if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def parse_time(value: Any) -> datetime | None:
    """Parse ``2006-01-02 15:04:05 MST`` (or RFC 3339); None when unparseable, like the service."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith(" UTC"):
        text = text[:-4]
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def to_id(value: Any, name: str) -> int:
    """Accept an id sent as a JSON number or string."""
    if isinstance(value, bool):
        raise bad_request(f"invalid {name}")
    if isinstance(value, int):
        result = value
    elif isinstance(value, str) and value.strip().isdigit():
        result = int(value.strip())
    else:
        raise bad_request(f"invalid {name}")
    if result < 1:
        raise bad_request(f"invalid {name}")
    return result


def _opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(f"{key} must be a string")
    return value


def _opt_dict(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request(f"{key} must be an object")
    return copy.deepcopy(value)


def _status(body: dict[str, Any]) -> str | None:
    value = body.get("availability_status")
    if value is None:
        return None
    if value not in AVAILABILITY_STATUSES:
        raise bad_request(f"invalid availability status: {value!r}")
    return str(value)


# --------------------------------------------------------------------------- models


@dataclass
class Tenant:
    """A tenant, found by org id or EBS account (``external_tenant``)."""

    id: int
    org_id: str
    external_tenant: str


@dataclass
class SourceType:
    """A seeded source type."""

    id: int
    name: str
    category: str
    product_name: str
    vendor: str
    icon_url: str
    schema: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass
class ApplicationType:
    """A seeded application type."""

    id: int
    name: str
    display_name: str
    supported_source_types: list[str]
    supported_authentication_types: dict[str, list[str]]
    created_at: datetime
    updated_at: datetime
    dependent_applications: list[str] = field(default_factory=list)
    resource_ownership: str | None = None


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


@dataclass
class Endpoint:
    """A source endpoint (kept for authentications with resource_type Endpoint)."""

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


# --------------------------------------------------------------------------- REST forms


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None and v != ""}


def render_source_type(t: SourceType) -> dict[str, Any]:
    """REST form of a source type."""
    return {
        "id": str(t.id),
        "created_at": rest_time(t.created_at),
        "updated_at": rest_time(t.updated_at),
        "category": t.category,
        "name": t.name,
        "product_name": t.product_name,
        "vendor": t.vendor,
        "schema": copy.deepcopy(t.schema),
        "icon_url": t.icon_url,
    }


def render_application_type(t: ApplicationType) -> dict[str, Any]:
    """REST form of an application type."""
    data: dict[str, Any] = {
        "id": str(t.id),
        "created_at": rest_time(t.created_at),
        "updated_at": rest_time(t.updated_at),
        "name": t.name,
        "display_name": t.display_name,
        "dependent_applications": list(t.dependent_applications),
        "supported_source_types": list(t.supported_source_types),
        "supported_authentication_types": copy.deepcopy(t.supported_authentication_types),
    }
    if t.resource_ownership:
        data["resource_ownership"] = t.resource_ownership
    return data


def render_source(s: Source) -> dict[str, Any]:
    """REST form of a source (nulls omitted)."""
    optional = _compact(
        {
            "paused_at": rest_time(s.paused_at),
            "uid": s.uid,
            "version": s.version,
            "imported": s.imported,
            "source_ref": s.source_ref,
        }
    )
    status = _compact(
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


def render_application(a: Application) -> dict[str, Any]:
    """REST form of an application (nulls and empty error omitted)."""
    data: dict[str, Any] = {
        "id": str(a.id),
        "created_at": rest_time(a.created_at),
        "updated_at": rest_time(a.updated_at),
        **_compact(
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
        _compact(
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
        **_compact({"paused_at": rest_time(a.paused_at)}),
        "application_id": str(a.application_id),
        "authentication_id": str(a.authentication_id),
    }


def render_endpoint(e: Endpoint) -> dict[str, Any]:
    """REST form of an endpoint (nulls omitted)."""
    return {
        "id": str(e.id),
        "created_at": rest_time(e.created_at),
        "updated_at": rest_time(e.updated_at),
        **_compact(
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


# --------------------------------------------------------------------------- event forms


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


# --------------------------------------------------------------------------- list queries

FILTER_COLUMNS: dict[str, frozenset[str]] = {
    "sources": frozenset(
        "id created_at updated_at paused_at name uid version imported source_ref app_creation_workflow"
        " source_type_id availability_status last_checked_at last_available_at".split()
    ),
    "applications": frozenset(
        "id created_at updated_at paused_at availability_status last_checked_at last_available_at"
        " availability_status_error extra source_id application_type_id".split()
    ),
    "authentications": frozenset(
        "id name authtype username availability_status last_checked_at last_available_at"
        " availability_status_error source_id resource_type resource_id".split()
    ),
    "application_authentications": frozenset(
        "id created_at updated_at paused_at application_id authentication_id".split()
    ),
    "endpoints": frozenset(
        "id created_at updated_at paused_at role port default scheme host path verify_ssl"
        " certificate_authority receptor_node availability_status last_checked_at last_available_at"
        " availability_status_error source_id".split()
    ),
    "application_types": frozenset(
        "id created_at updated_at name display_name dependent_applications supported_source_types"
        " supported_authentication_types resource_ownership".split()
    ),
    "source_types": frozenset(
        "id created_at updated_at category name product_name vendor icon_url schema".split()
    ),
}
OPERATORS = frozenset(
    "eq not_eq gt gte lt lte nil not_nil contains starts_with ends_with eq_i not_eq_i contains_i"
    " starts_with_i ends_with_i".split()
)
# Related tables that list endpoints accept as ``filter[<relation>][<column>][<op>]``.
RELATIONS: dict[str, str] = {"source_type": "source_types", "application_type": "application_types"}
DEFAULT_LIMIT = 100


@dataclass(frozen=True)
class Filter:
    """One ``filter[...]`` condition; several values mean IN for ``eq``."""

    relation: str | None
    column: str
    op: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class ListQuery:
    """Filters, sorting and pagination parsed from a query string."""

    filters: tuple[Filter, ...] = ()
    sort: tuple[tuple[str, bool], ...] = ()
    limit: int = DEFAULT_LIMIT
    offset: int = 0


def parse_list_query(pairs: Sequence[tuple[str, str]]) -> ListQuery:
    """Parse ``filter[col][op]=v``, bare ``col=v``, ``sort_by``, ``limit`` and ``offset``."""
    grouped: dict[tuple[str | None, str, str], list[str]] = {}
    sort: list[tuple[str, bool]] = []
    limit, offset = DEFAULT_LIMIT, 0
    for key, value in pairs:
        if key == "limit":
            limit = _int_param(value, "limit", minimum=1)
        elif key == "offset":
            offset = _int_param(value, "offset", minimum=0)
        elif key == "sort_by":
            parts = value.replace(":", " ").split()
            if not parts or len(parts) > 2 or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc")):
                raise bad_request("invalid sort_by parameter")
            sort.append((parts[0], len(parts) == 2 and parts[1].lower() == "desc"))
        else:
            tokens = re.findall(r"\w+", key)
            if tokens and tokens[0] == "filter" and key.startswith("filter["):
                rest = tokens[1:]
            else:
                rest = tokens[:1]
            relation = None
            if len(rest) >= 2 and rest[0] in RELATIONS and rest[1] not in OPERATORS:
                relation, rest = rest[0], rest[1:]
            if not rest or len(rest) > 2:
                raise bad_request("invalid filter parameter")
            op = rest[1] if len(rest) == 2 else "eq"
            if op not in OPERATORS:
                raise bad_request("invalid filter parameter")
            grouped.setdefault((relation, rest[0], op), []).append(value)
    filters = tuple(Filter(r, c, o, tuple(v)) for (r, c, o), v in grouped.items())
    return ListQuery(filters, tuple(sort), limit, offset)


def _int_param(value: str, name: str, *, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise bad_request(f"invalid {name} parameter") from None
    if number < minimum:
        raise bad_request(f"{name} must be at least {minimum}")
    return number


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return rest_time(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _matches(value: Any, op: str, wanted: tuple[str, ...]) -> bool:
    if op == "nil":
        return value is None
    if op == "not_nil":
        return value is not None
    text = _text(value)
    if text is None:
        return False
    if op.endswith("_i"):
        text, wanted, op = text.lower(), tuple(w.lower() for w in wanted), op[:-2]
    first = wanted[0]
    if op == "eq":
        return text in wanted
    if op == "not_eq":
        return text not in wanted
    if op == "contains":
        return first in text
    if op == "starts_with":
        return text.startswith(first)
    if op == "ends_with":
        return text.endswith(first)
    left, right = _number(text), _number(first)
    pair: tuple[Any, Any] = (left, right) if left is not None and right is not None else (text, first)
    return {
        "gt": pair[0] > pair[1],
        "gte": pair[0] >= pair[1],
        "lt": pair[0] < pair[1],
        "lte": pair[0] <= pair[1],
    }[op]


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (2, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, _text(value))


def select(
    rows: Iterable[Any],
    table: str,
    query: ListQuery,
    related: dict[str, Callable[[Any], Any]] | None = None,
) -> tuple[list[Any], int]:
    """Filter, sort and page ``rows``; returns (page, total count). Unknown columns -> 400."""
    related = related or {}
    result = list(rows)
    for flt in query.filters:
        if flt.relation is None:
            if flt.column not in FILTER_COLUMNS[table]:
                raise bad_request("invalid filter parameter")
            result = [r for r in result if _matches(getattr(r, flt.column), flt.op, flt.values)]
            continue
        lookup = related.get(flt.relation)
        if lookup is None or flt.column not in FILTER_COLUMNS[RELATIONS[flt.relation]]:
            raise bad_request("invalid filter parameter")
        result = [r for r in result if _matches(getattr(lookup(r), flt.column), flt.op, flt.values)]
    result.sort(key=lambda r: r.id)
    for column, desc in reversed(query.sort):
        if column not in FILTER_COLUMNS[table]:
            raise bad_request("invalid sort_by parameter")
        result.sort(key=lambda r, c=column: _sort_key(getattr(r, c)), reverse=desc)
    return result[query.offset : query.offset + query.limit], len(result)


# --------------------------------------------------------------------------- seeds

_AMAZON_ICON = "/apps/frontend-assets/partners-icons/aws-long.svg"
_AZURE_ICON = "/apps/frontend-assets/partners-icons/microsoft-azure-short.svg"
_GOOGLE_ICON = "/apps/frontend-assets/partners-icons/google-cloud-short.svg"
_REDHAT_ICON = "/apps/frontend-assets/red-hat-logos/stacked.svg"
# (id, name, category, product_name, vendor, icon_url, authentication types)
SOURCE_TYPE_SEEDS: tuple[tuple[int, str, str, str, str, str, tuple[str, ...]], ...] = (
    (1, "openshift", "Red Hat", "Red Hat OpenShift Container Platform", "Red Hat", _REDHAT_ICON, ("token",)),
    (2, "amazon", "Cloud", "Amazon Web Services", "Amazon", _AMAZON_ICON,
     ("arn", "cloud-meter-arn", "access_key_secret_key")),
    (3, "azure", "Cloud", "Microsoft Azure", "Azure", _AZURE_ICON,
     ("tenant_id_client_id_client_secret", "lighthouse_subscription_id")),
    (4, "google", "Cloud", "Google Cloud", "Google", _GOOGLE_ICON, ("project_id_service_account_json",)),
    (5, "ibm", "Cloud", "IBM Cloud", "IBM", "/apps/frontend-assets/partners-icons/ibm-cloud.svg",
     ("api_token_account_id",)),
    (6, "satellite", "Red Hat", "Red Hat Satellite", "Red Hat", _REDHAT_ICON, ("receptor_node",)),
    (7, "amazon-local", "Cloud", "Amazon Web Services (local files)", "Amazon", _AMAZON_ICON, ("arn",)),
    (8, "azure-local", "Cloud", "Microsoft Azure (local files)", "Azure", _AZURE_ICON,
     ("tenant_id_client_id_client_secret",)),
    (9, "google-local", "Cloud", "Google Cloud (local files)", "Google", _GOOGLE_ICON,
     ("project_id_service_account_json",)),
    (10, "bitbucket", "Developer sources", "Bitbucket", "Atlassian", "", ("username_password",)),
    (11, "dockerhub", "Developer sources", "Docker Hub", "Docker", "", ("username_password",)),
    (12, "github", "Developer sources", "GitHub", "GitHub", "", ("username_password",)),
    (13, "gitlab", "Developer sources", "GitLab", "GitLab", "", ("username_password",)),
    (14, "quay", "Developer sources", "Quay", "Red Hat", "", ("username_password",)),
)
_CM_SOURCE_TYPES = (
    "amazon", "azure", "google", "openshift", "ibm", "amazon-local", "azure-local", "google-local",
)
_CM_AUTH_TYPES = {
    "amazon": ["arn"],
    "azure": ["tenant_id_client_id_client_secret"],
    "google": ["project_id_service_account_json"],
    "openshift": ["token"],
    "ibm": ["api_token_account_id"],
    "amazon-local": ["arn"],
    "azure-local": ["tenant_id_client_id_client_secret"],
    "google-local": ["project_id_service_account_json"],
}
_DEV_TYPES = ("bitbucket", "dockerhub", "github", "gitlab", "quay")
# (id, name, display_name, supported source types, supported authentication types, ownership)
APPLICATION_TYPE_SEEDS: tuple[
    tuple[int, str, str, tuple[str, ...], dict[str, list[str]], str | None], ...
] = (
    (1, "/insights/platform/cloud-meter", "RHEL management", ("amazon", "azure", "google"),
     {"amazon": ["cloud-meter-arn"], "azure": ["lighthouse_subscription_id"],
      "google": ["project_id_service_account_json"]}, None),
    (2, COST_MANAGEMENT, "Cost Management", _CM_SOURCE_TYPES, _CM_AUTH_TYPES, None),
    (3, "/insights/platform/fifi", "Remediations", ("satellite",), {"satellite": ["receptor_node"]}, None),
    (4, "/insights/platform/image-builder", "Launch images", ("amazon", "azure", "google"),
     {"amazon": ["provisioning-arn"], "azure": ["provisioning_lighthouse_subscription_id"],
      "google": ["provisioning_project_id"]}, None),
    (5, "/insights/platform/app-studio", "App Studio", _DEV_TYPES,
     {name: ["username_password"] for name in _DEV_TYPES}, "user"),
)


# --------------------------------------------------------------------------- the store


class Store:
    """All stand-in data; every public method takes the store lock (an ``RLock``)."""

    def __init__(self, *, honor_uid: bool = True) -> None:
        self.lock = threading.RLock()
        self.honor_uid = honor_uid
        now = utcnow()
        self.source_types: dict[int, SourceType] = {
            sid: SourceType(
                sid, name, cat, product, vendor, icon,
                {"authentication": [{"type": t, "name": t} for t in auths],
                 "endpoint": {"hidden": True, "fields": []}},
                now, now,
            )
            for sid, name, cat, product, vendor, icon, auths in SOURCE_TYPE_SEEDS
        }
        self.application_types: dict[int, ApplicationType] = {
            aid: ApplicationType(aid, name, display, list(stypes), copy.deepcopy(auths), now, now,
                                 resource_ownership=owner)
            for aid, name, display, stypes, auths, owner in APPLICATION_TYPE_SEEDS
        }
        self._next: dict[str, int] = {}
        self.tenants: dict[int, Tenant] = {}
        self.sources: dict[int, Source] = {}
        self.applications: dict[int, Application] = {}
        self.authentications: dict[int, Authentication] = {}
        self.application_authentications: dict[int, ApplicationAuthentication] = {}
        self.endpoints: dict[int, Endpoint] = {}

    def _new_id(self, kind: str) -> int:
        self._next[kind] = self._next.get(kind, 0) + 1
        return self._next[kind]

    def clear(self) -> None:
        """Drop tenants and every tenant-owned row (seeds stay; ids keep counting)."""
        with self.lock:
            for table in (self.tenants, self.sources, self.applications, self.authentications,
                          self.application_authentications, self.endpoints):
                table.clear()

    # ------------------------------------------------------------------ tenants

    def tenant(self, org_id: str, account: str) -> Tenant:
        """Find the tenant by org id, then by account; create it when missing."""
        with self.lock:
            found = None
            if org_id:
                found = next((t for t in self.tenants.values() if t.org_id == org_id), None)
            if found is None and account:
                found = next((t for t in self.tenants.values() if t.external_tenant == account), None)
            if found is None:
                found = Tenant(self._new_id("tenant"), org_id, account)
                self.tenants[found.id] = found
            if not found.org_id and org_id:
                found.org_id = org_id
            if not found.external_tenant and account:
                found.external_tenant = account
            return found

    def tenant_by_id(self, tenant_id: int) -> Tenant:
        """The tenant with this internal id."""
        return self.tenants[tenant_id]

    # ------------------------------------------------------------------ lookups

    def source_type(self, type_id: int) -> SourceType:
        """A source type by id, or 404."""
        try:
            return self.source_types[type_id]
        except KeyError:
            raise not_found("source type") from None

    def source_type_by_name(self, name: str) -> SourceType | None:
        """A source type by name."""
        return next((t for t in self.source_types.values() if t.name == name), None)

    def application_type(self, type_id: int) -> ApplicationType:
        """An application type by id, or 404."""
        try:
            return self.application_types[type_id]
        except KeyError:
            raise not_found("application type") from None

    def application_type_by_name(self, name: str) -> ApplicationType | None:
        """An application type by name."""
        return next((t for t in self.application_types.values() if t.name == name), None)

    def _owned(self, table: dict[int, Any], tenant: Tenant, row_id: int, kind: str) -> Any:
        row = table.get(row_id)
        if row is None or row.tenant_id != tenant.id:
            raise not_found(kind)
        return row

    def source(self, tenant: Tenant, source_id: int) -> Source:
        """The tenant's source, or 404 ``source not found``."""
        return self._owned(self.sources, tenant, source_id, "source")

    def application(self, tenant: Tenant, app_id: int) -> Application:
        """The tenant's application, or 404."""
        return self._owned(self.applications, tenant, app_id, "application")

    def authentication(self, tenant: Tenant, auth_id: int) -> Authentication:
        """The tenant's authentication, or 404."""
        return self._owned(self.authentications, tenant, auth_id, "authentication")

    def application_authentication(self, tenant: Tenant, aa_id: int) -> ApplicationAuthentication:
        """The tenant's application authentication, or 404."""
        return self._owned(self.application_authentications, tenant, aa_id, "application authentication")

    def endpoint(self, tenant: Tenant, endpoint_id: int) -> Endpoint:
        """The tenant's endpoint, or 404."""
        return self._owned(self.endpoints, tenant, endpoint_id, "endpoint")

    def owned(self, table: dict[int, Any], tenant: Tenant) -> list[Any]:
        """Rows of ``table`` visible to ``tenant``."""
        with self.lock:
            return [row for row in table.values() if row.tenant_id == tenant.id]

    # ------------------------------------------------------------------ sources

    def create_source(self, tenant: Tenant, body: dict[str, Any]) -> tuple[Source, list[Event]]:
        """POST /sources."""
        with self.lock:
            name = body.get("name")
            if not isinstance(name, str) or not name.strip():
                raise bad_request("name is required")
            if any(s.name == name for s in self.owned(self.sources, tenant)):
                raise bad_request("source name already exists in same tenant")
            if body.get("source_type_id") is None:
                raise bad_request("source_type_id is required")
            type_id = to_id(body["source_type_id"], "source_type_id")
            if type_id not in self.source_types:
                raise bad_request("source type not found")
            workflow = body.get("app_creation_workflow") or "manual_configuration"
            if workflow not in APP_CREATION_WORKFLOWS:
                raise bad_request(f"invalid app_creation_workflow: {workflow!r}")
            uid = _opt_str(body, "uid")
            if not (self.honor_uid and uid):
                uid = str(uuid.uuid4())
            now = utcnow()
            source = Source(
                id=self._new_id("source"),
                tenant_id=tenant.id,
                name=name,
                source_type_id=type_id,
                created_at=now,
                updated_at=now,
                uid=uid,
                version=_opt_str(body, "version"),
                imported=_opt_str(body, "imported"),
                source_ref=_opt_str(body, "source_ref"),
                app_creation_workflow=workflow,
                availability_status=_status(body) or "in_progress",
            )
            self.sources[source.id] = source
            return source, [("Source.create", source_event(source, ""))]

    def update_source(self, tenant: Tenant, source_id: int, body: dict[str, Any]) -> tuple[Source, list[Event]]:
        """PATCH /sources/:id."""
        with self.lock:
            source = self.source(tenant, source_id)
            status_fields = {"availability_status", "last_checked_at", "last_available_at"}
            editable = {"name", "version", "imported", "source_ref"} | status_fields
            unknown = set(body) - editable
            if unknown:
                raise bad_request(f"cannot update {', '.join(sorted(unknown))}")
            if source.paused_at is not None and set(body) - status_fields:
                raise bad_request("only the availability status may be updated on a paused source")
            if "name" in body:
                name = body["name"]
                if not isinstance(name, str) or not name.strip():
                    raise bad_request("name is required")
                if any(s.name == name and s.id != source.id for s in self.owned(self.sources, tenant)):
                    raise bad_request("source name already exists in same tenant")
                source.name = name
            for key in ("version", "imported", "source_ref"):
                if key in body:
                    setattr(source, key, _opt_str(body, key))
            status = _status(body)
            if status:
                source.availability_status = status
            for key in ("last_checked_at", "last_available_at"):
                if key in body:
                    setattr(source, key, parse_time(body[key]))
            source.updated_at = utcnow()
            return source, [("Source.update", source_event(source, ""))]

    def delete_source(self, tenant: Tenant, source_id: int) -> list[Event]:
        """DELETE /sources/:id with the service's cascade order."""
        with self.lock:
            source = self.source(tenant, source_id)
            account = tenant.external_tenant
            apps = sorted((a for a in self.applications.values() if a.source_id == source.id), key=lambda a: a.id)
            app_ids = {a.id for a in apps}
            links = sorted(
                (x for x in self.application_authentications.values() if x.application_id in app_ids),
                key=lambda x: x.id,
            )
            endpoints = sorted((e for e in self.endpoints.values() if e.source_id == source.id), key=lambda e: e.id)
            auths = sorted(
                (a for a in self.authentications.values() if a.source_id == source.id), key=lambda a: a.id
            )
            events: list[Event] = []
            events += [("ApplicationAuthentication.destroy", application_authentication_event(x, account)) for x in links]
            events += [("Application.destroy", application_event(a, account)) for a in apps]
            events += [("Endpoint.destroy", endpoint_event(e, account)) for e in endpoints]
            events.append(("Source.destroy", source_event(source, account)))
            events += [("Authentication.destroy", authentication_event(a, account)) for a in auths]
            for x in links:
                del self.application_authentications[x.id]
            for a in apps:
                del self.applications[a.id]
            for e in endpoints:
                del self.endpoints[e.id]
            for auth in auths:
                del self.authentications[auth.id]
            del self.sources[source.id]
            return events

    def pause_source(self, tenant: Tenant, source_id: int, pause: bool) -> list[Event]:
        """POST /sources/:id/pause or /unpause: the source and its applications."""
        with self.lock:
            source = self.source(tenant, source_id)
            now = utcnow()
            source.paused_at = now if pause else None
            source.updated_at = now
            verb = "pause" if pause else "unpause"
            events: list[Event] = [(f"Source.{verb}", source_event(source, ""))]
            for app in sorted((a for a in self.applications.values() if a.source_id == source.id), key=lambda a: a.id):
                app.paused_at = now if pause else None
                app.updated_at = now
                events.append((f"Application.{verb}", application_event(app, "")))
            return events

    # ------------------------------------------------------------------ applications

    def create_application(self, tenant: Tenant, body: dict[str, Any]) -> tuple[Application, list[Event]]:
        """POST /applications (no event on a superkey source)."""
        with self.lock:
            if body.get("source_id") is None or body.get("application_type_id") is None:
                raise bad_request("source_id and application_type_id are required")
            source_id = to_id(body["source_id"], "source_id")
            type_id = to_id(body["application_type_id"], "application_type_id")
            source = self.sources.get(source_id)
            if source is None or source.tenant_id != tenant.id:
                raise bad_request("source not found")
            app_type = self.application_types.get(type_id)
            if app_type is None:
                raise bad_request("application type not found")
            if self.source_types[source.source_type_id].name not in app_type.supported_source_types:
                raise bad_request("Validation failed: source type is not compatible with this application type")
            if any(a.source_id == source_id and a.application_type_id == type_id for a in self.applications.values()):
                raise bad_request(
                    f"Application of application type = {type_id} already exists for the source id = {source_id}"
                )
            now = utcnow()
            app = Application(
                id=self._new_id("application"),
                tenant_id=tenant.id,
                source_id=source_id,
                application_type_id=type_id,
                created_at=now,
                updated_at=now,
                extra=_opt_dict(body, "extra"),
                availability_status=_status(body) or "in_progress",
                availability_status_error=_opt_str(body, "availability_status_error") or "",
            )
            self.applications[app.id] = app
            if source.app_creation_workflow == "account_authorization":
                return app, []
            return app, [("Application.create", application_event(app, tenant.external_tenant))]

    def update_application(
        self, tenant: Tenant, app_id: int, body: dict[str, Any]
    ) -> tuple[Application, list[Event]]:
        """PATCH /applications/:id: ``extra`` replaces the object; status is copied to the source."""
        with self.lock:
            app = self.application(tenant, app_id)
            status_fields = {"availability_status", "availability_status_error", "last_checked_at", "last_available_at"}
            unknown = set(body) - status_fields - {"extra"}
            if unknown:
                raise bad_request(f"cannot update {', '.join(sorted(unknown))}")
            if app.paused_at is not None and "extra" in body:
                raise bad_request("only the availability status may be updated on a paused application")
            status = _status(body)
            if "availability_status_error" in body:
                error = body["availability_status_error"]
                if error is not None and not isinstance(error, str):
                    raise bad_request("availability_status_error must be a string")
            event_type = "Application.update"
            if "extra" in body:
                app.extra = _opt_dict(body, "extra")
                source = self.sources[app.source_id]
                if source.app_creation_workflow == "account_authorization" and "_superkey" in (app.extra or {}):
                    event_type = "Application.create"
            if "availability_status_error" in body:
                app.availability_status_error = body["availability_status_error"] or ""
            for key in ("last_checked_at", "last_available_at"):
                if key in body:
                    setattr(app, key, parse_time(body[key]))
            if status and status != app.availability_status:
                app.availability_status = status
                source = self.sources[app.source_id]
                source.availability_status = status
                for key in ("last_checked_at", "last_available_at"):
                    if getattr(app, key) is not None:
                        setattr(source, key, getattr(app, key))
            app.updated_at = utcnow()
            return app, [(event_type, application_event(app, tenant.external_tenant))]

    def delete_application(self, tenant: Tenant, app_id: int) -> list[Event]:
        """DELETE /applications/:id with the service's cascade order."""
        with self.lock:
            app = self.application(tenant, app_id)
            account = tenant.external_tenant
            links = sorted(
                (x for x in self.application_authentications.values() if x.application_id == app.id),
                key=lambda x: x.id,
            )
            auths = sorted(
                (a for a in self.authentications.values()
                 if a.resource_type == "Application" and a.resource_id == app.id),
                key=lambda a: a.id,
            )
            events: list[Event] = [
                ("ApplicationAuthentication.destroy", application_authentication_event(x, account)) for x in links
            ]
            events.append(("Application.destroy", application_event(app, account)))
            events += [("Authentication.destroy", authentication_event(a, account)) for a in auths]
            for x in links:
                del self.application_authentications[x.id]
            for auth in auths:
                del self.authentications[auth.id]
                for x in [x for x in self.application_authentications.values() if x.authentication_id == auth.id]:
                    del self.application_authentications[x.id]
            del self.applications[app.id]
            return events

    def pause_application(self, tenant: Tenant, app_id: int, pause: bool) -> list[Event]:
        """POST /applications/:id/pause or /unpause."""
        with self.lock:
            app = self.application(tenant, app_id)
            now = utcnow()
            app.paused_at = now if pause else None
            app.updated_at = now
            return [(f"Application.{'pause' if pause else 'unpause'}", application_event(app, ""))]

    # ------------------------------------------------------------------ authentications

    def _resource_source_id(self, tenant: Tenant, resource_type: str, resource_id: int) -> int:
        if resource_type == "Source":
            found: Any = self.sources.get(resource_id)
        elif resource_type == "Application":
            found = self.applications.get(resource_id)
        else:
            found = self.endpoints.get(resource_id)
        if found is None or found.tenant_id != tenant.id:
            raise bad_request(f"{resource_type.lower()} not found")
        return found.id if resource_type == "Source" else found.source_id

    def create_authentication(
        self, tenant: Tenant, body: dict[str, Any]
    ) -> tuple[Authentication, list[Event]]:
        """POST /authentications: source_id derived from the resource."""
        with self.lock:
            authtype = body.get("authtype")
            if not isinstance(authtype, str) or not authtype:
                raise bad_request("authtype is required")
            raw_type = body.get("resource_type")
            resource_type = RESOURCE_TYPES.get(str(raw_type).lower()) if raw_type is not None else None
            if resource_type is None:
                raise bad_request("resource_type must be one of Source, Endpoint, Application")
            if body.get("resource_id") is None:
                raise bad_request("resource_id is required")
            resource_id = to_id(body["resource_id"], "resource_id")
            source_id = self._resource_source_id(tenant, resource_type, resource_id)
            auth = Authentication(
                id=self._new_id("authentication"),
                tenant_id=tenant.id,
                source_id=source_id,
                resource_type=resource_type,
                resource_id=resource_id,
                authtype=authtype,
                username=_opt_str(body, "username"),
                password=_opt_str(body, "password"),
                name=_opt_str(body, "name"),
                extra=_opt_dict(body, "extra"),
                availability_status=_status(body) or "in_progress",
                availability_status_error=_opt_str(body, "availability_status_error") or "",
            )
            self.authentications[auth.id] = auth
            return auth, [("Authentication.create", authentication_event(auth, tenant.external_tenant))]

    def update_authentication(
        self, tenant: Tenant, auth_id: int, body: dict[str, Any]
    ) -> tuple[Authentication, list[Event]]:
        """PATCH /authentications/:id."""
        with self.lock:
            auth = self.authentication(tenant, auth_id)
            editable = {"name", "authtype", "username", "password", "extra", "availability_status",
                        "availability_status_error"}
            unknown = set(body) - editable
            if unknown:
                raise bad_request(f"cannot update {', '.join(sorted(unknown))}")
            status = _status(body)
            for key in ("name", "username", "password"):
                if key in body:
                    setattr(auth, key, _opt_str(body, key))
            if "authtype" in body:
                authtype = body["authtype"]
                if not isinstance(authtype, str) or not authtype:
                    raise bad_request("authtype is required")
                auth.authtype = authtype
            if "extra" in body:
                auth.extra = _opt_dict(body, "extra")
            if status:
                auth.availability_status = status
            if "availability_status_error" in body:
                auth.availability_status_error = _opt_str(body, "availability_status_error") or ""
            return auth, [("Authentication.update", authentication_event(auth, ""))]

    def delete_authentication(self, tenant: Tenant, auth_id: int) -> list[Event]:
        """DELETE /authentications/:id (its application links go too, silently)."""
        with self.lock:
            auth = self.authentication(tenant, auth_id)
            for x in [x for x in self.application_authentications.values() if x.authentication_id == auth.id]:
                del self.application_authentications[x.id]
            del self.authentications[auth.id]
            return [("Authentication.destroy", authentication_event(auth, tenant.external_tenant))]

    # ------------------------------------------------------------------ application authentications

    def create_application_authentication(
        self, tenant: Tenant, body: dict[str, Any]
    ) -> tuple[ApplicationAuthentication, list[Event]]:
        """POST /application_authentications."""
        with self.lock:
            if body.get("application_id") is None or body.get("authentication_id") is None:
                raise bad_request("application_id and authentication_id are required")
            app_id = to_id(body["application_id"], "application_id")
            auth_id = to_id(body["authentication_id"], "authentication_id")
            app = self.applications.get(app_id)
            auth = self.authentications.get(auth_id)
            if app is None or app.tenant_id != tenant.id:
                raise bad_request("application not found")
            if auth is None or auth.tenant_id != tenant.id:
                raise bad_request("authentication not found")
            if any(x.application_id == app_id and x.authentication_id == auth_id
                   for x in self.application_authentications.values()):
                raise bad_request("application authentication already exists")
            now = utcnow()
            link = ApplicationAuthentication(
                self._new_id("application_authentication"), tenant.id, app_id, auth_id, now, now
            )
            self.application_authentications[link.id] = link
            event = application_authentication_event(link, tenant.external_tenant)
            return link, [("ApplicationAuthentication.create", event)]

    def delete_application_authentication(self, tenant: Tenant, aa_id: int) -> list[Event]:
        """DELETE /application_authentications/:id."""
        with self.lock:
            link = self.application_authentication(tenant, aa_id)
            del self.application_authentications[link.id]
            event = application_authentication_event(link, tenant.external_tenant)
            return [("ApplicationAuthentication.destroy", event)]

    # ------------------------------------------------------------------ endpoints

    _ENDPOINT_FIELDS = ("role", "port", "default", "scheme", "host", "path", "verify_ssl",
                        "certificate_authority", "receptor_node", "availability_status_error")

    def _endpoint_values(self, body: dict[str, Any]) -> dict[str, Any]:
        values = {k: body[k] for k in self._ENDPOINT_FIELDS if k in body}
        if "port" in values and values["port"] is not None:
            try:
                values["port"] = int(values["port"])
            except (TypeError, ValueError):
                raise bad_request("invalid port") from None
        if "availability_status_error" in values:
            values["availability_status_error"] = values["availability_status_error"] or ""
        return values

    def create_endpoint(self, tenant: Tenant, body: dict[str, Any]) -> tuple[Endpoint, list[Event]]:
        """POST /endpoints."""
        with self.lock:
            if body.get("source_id") is None:
                raise bad_request("source_id is required")
            source_id = to_id(body["source_id"], "source_id")
            source = self.sources.get(source_id)
            if source is None or source.tenant_id != tenant.id:
                raise bad_request("source not found")
            now = utcnow()
            endpoint = Endpoint(self._new_id("endpoint"), tenant.id, source_id, now, now, **self._endpoint_values(body))
            endpoint.availability_status = _status(body)
            self.endpoints[endpoint.id] = endpoint
            return endpoint, [("Endpoint.create", endpoint_event(endpoint, ""))]

    def update_endpoint(self, tenant: Tenant, endpoint_id: int, body: dict[str, Any]) -> tuple[Endpoint, list[Event]]:
        """PATCH /endpoints/:id."""
        with self.lock:
            endpoint = self.endpoint(tenant, endpoint_id)
            for key, value in self._endpoint_values(body).items():
                setattr(endpoint, key, value)
            status = _status(body)
            if status:
                endpoint.availability_status = status
            endpoint.updated_at = utcnow()
            return endpoint, [("Endpoint.update", endpoint_event(endpoint, ""))]

    def delete_endpoint(self, tenant: Tenant, endpoint_id: int) -> list[Event]:
        """DELETE /endpoints/:id and the authentications attached to it."""
        with self.lock:
            endpoint = self.endpoint(tenant, endpoint_id)
            account = tenant.external_tenant
            auths = sorted(
                (a for a in self.authentications.values()
                 if a.resource_type == "Endpoint" and a.resource_id == endpoint.id),
                key=lambda a: a.id,
            )
            events: list[Event] = [("Endpoint.destroy", endpoint_event(endpoint, account))]
            events += [("Authentication.destroy", authentication_event(a, account)) for a in auths]
            for auth in auths:
                del self.authentications[auth.id]
            del self.endpoints[endpoint.id]
            return events
