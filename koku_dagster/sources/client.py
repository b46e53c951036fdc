"""Platform Sources REST client with Koku's error classification (see docs/sources.md).

One pooled ``requests.Session`` per client (connections kept alive); every call has a connect
and read timeout and an overall deadline, and its answer is read as a stream up to a size cap.
Ids are checked before they go into a path; list answers are paged up to a row cap and their
``meta.count`` is checked. Every row is validated here (ids, uuids, text without NUL and within
length limits, JSON objects any database can store), so what the database could not hold never
gets further. No cookies are sent (Platform Sources authenticates by header). Error texts name
the path and status only: never headers, bodies or secrets.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter

from koku_dagster.sources.errors import SourceDataError, SourceNotFound, SourcesApiError
from koku_dagster.sources.model import Application, AuthenticationRecord, SourceDetails, Tenant
from koku_dagster.sources.values import (
    BadValue,
    clean_json_object,
    optional_id,
    optional_text,
    optional_uuid,
    parse_id,
    require_id,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

COST_MANAGEMENT_APP_TYPE = "/insights/platform/cost-management"
#: Paths built from our own ids and names only: safe to append to a prepared base URL as is.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_\-]+(?:/[A-Za-z0-9_\-]+)*")
#: Request templates kept (one per method and tenant); all are dropped when full.
_MAX_TEMPLATES = 1024
#: Longest source name or reference kept (Platform Sources' own limit is far below it).
MAX_NAME = 1024
#: Rows per list page, and the most rows one list call may bring (pages stop there).
PAGE_SIZE = 1000
MAX_LIST_ROWS = 10_000
_CHUNK_BYTES = 64 * 1024


def _invalid(exc: BadValue) -> SourceDataError:
    """The fixed reason for an unusable answer (it names the field, never the value)."""
    return SourceDataError(f"Platform Sources returned invalid data for this source: {exc}.")


def _details(row: dict[str, Any]) -> SourceDetails:
    try:
        return SourceDetails(
            name=optional_text(row.get("name"), "name", MAX_NAME),
            source_type_id=optional_id(row.get("source_type_id"), "source_type_id"),
            uid=optional_uuid(row.get("uid"), "uid"),
            source_ref=optional_text(row.get("source_ref"), "source_ref", MAX_NAME),
        )
    except BadValue as exc:
        raise _invalid(exc) from None


def _application(row: dict[str, Any]) -> Application:
    try:
        return Application(
            id=require_id(row.get("id"), "application id"), extra=clean_json_object(row.get("extra"), "extra")
        )
    except BadValue as exc:
        raise _invalid(exc) from None


def _authentication(row: dict[str, Any]) -> AuthenticationRecord:
    try:
        return AuthenticationRecord(
            id=require_id(row.get("id"), "authentication id"),
            username=optional_text(row.get("username"), "username") or "",
            extra=clean_json_object(row.get("extra"), "authentication extra"),
        )
    except BadValue as exc:
        raise _invalid(exc) from None


def _parse_rows(rows: list[dict[str, Any]], parse: Callable[[dict[str, Any]], T]) -> list[tuple[dict[str, Any], T]]:
    """Every row of a list answer, parsed; one bad row refuses the whole answer (the sources of a bulk
    read are then asked one by one, so the bad data is attributed to its own source)."""
    return [(row, parse(row)) for row in rows]


def _row_id(row: dict[str, Any], key: str) -> int | None:
    return parse_id(row.get(key))


class SourcesClient:
    """Calls the Platform Sources public and internal APIs."""

    def __init__(
        self,
        api_base: str,
        internal_base: str,
        psk: str,
        *,
        timeout: tuple[float, float] = (3.0, 10.0),
        total_timeout: float = 15.0,
        max_response_bytes: int = 8 * 1024 * 1024,
        pool_size: int = 16,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.internal_base = internal_base.rstrip("/")
        self._psk = psk
        self.timeout = timeout
        self.total_timeout = total_timeout
        self.max_response_bytes = max_response_bytes
        self.session = requests.Session()
        # Read proxy and CA settings from the environment once, not on every call (that costs
        # about as much CPU as the call itself).
        self.session.proxies = requests.utils.get_environ_proxies(self.api_base)
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if ca_bundle:
            self.session.verify = ca_bundle
        self.session.trust_env = False
        self._templates: dict[tuple[str, Tenant | None], requests.PreparedRequest] = {}
        # Base URLs that preparing leaves as they are (so a plain path can be appended as is).
        self._plain_bases = all(
            requests.Request("GET", base + "/x").prepare().url == base + "/x"
            for base in (self.api_base, self.internal_base)
        )
        adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()

    def __repr__(self) -> str:
        return f"SourcesClient({self.api_base!r})"

    # -- transport -----------------------------------------------------------------------------

    def _headers(self, tenant: Tenant | None) -> dict[str, str]:
        headers = {"x-rh-sources-psk": self._psk, "Accept": "application/json"}
        if tenant is not None:
            headers["x-rh-identity"] = tenant.auth_header
            headers["x-rh-sources-org-id"] = tenant.org_id
            if tenant.account_id:
                headers["x-rh-sources-account-number"] = tenant.account_id
        return headers

    def _prepare(
        self,
        method: str,
        url: str,
        tenant: Tenant | None,
        params: dict[str, str | list[str]] | None,
        body: dict[str, Any] | None,
    ) -> requests.PreparedRequest:
        """The request to send: the session's default headers plus :meth:`_headers`, never cookies.

        A call without query parameters (the status PATCHes, most of the calls) copies a template
        prepared once per (method, tenant) and sets only its URL and body: preparing a request
        from scratch costs about a third of a loopback call's CPU.
        """
        if params or not self._plain_bases:
            headers = {**self.session.headers, **self._headers(tenant)}
            return requests.Request(method, url, headers=headers, params=params, json=body).prepare()
        key = (method, tenant)
        template = self._templates.get(key)
        if template is None:
            if len(self._templates) >= _MAX_TEMPLATES:
                self._templates.clear()
            headers = {**self.session.headers, **self._headers(tenant)}
            template = self._templates[key] = requests.Request(method, url, headers=headers).prepare()
        prepared = template.copy()
        prepared.url = url
        prepared.prepare_body(None, None, json=body)
        return prepared

    def _request(
        self,
        method: str,
        path: str,
        tenant: Tenant | None,
        *,
        internal: bool = False,
        params: dict[str, str | list[str]] | None = None,
        body: dict[str, Any] | None = None,
    ) -> requests.Response:
        """Send one request; the answer's body is read (at most :attr:`max_response_bytes`) before return.

        ``path`` must be plain (letters, digits, ``_``, ``-`` and ``/`` between segments): every
        id in it went through :func:`_id_segment`, so nothing from outside can change its meaning.
        """
        if not _PLAIN_PATH.fullmatch(path):
            raise SourcesApiError("refused to call a path that is not plain")
        url = (self.internal_base if internal else self.api_base) + "/" + path
        started = time.monotonic()
        try:
            prepared = self._prepare(method, url, tenant, params, body)
            response = self.session.send(
                prepared, timeout=self.timeout, proxies=self.session.proxies, verify=self.session.verify, stream=True
            )
        except requests.RequestException as exc:
            raise SourcesApiError(f"{method} {path}: {type(exc).__name__} (Platform Sources unreachable)") from None
        with response:
            response._content = self._read_body(method, path, response, started)
        return response

    def _read_body(self, method: str, path: str, response: requests.Response, started: float) -> bytes:
        """The answer's body, read in chunks; refused past the size cap or the overall deadline."""
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_response_bytes:
            raise SourceDataError("Platform Sources sent an answer larger than allowed.")
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(_CHUNK_BYTES):
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise SourceDataError("Platform Sources sent an answer larger than allowed.")
                if time.monotonic() - started > self.total_timeout:
                    raise SourcesApiError(f"{method} {path}: answer took too long")
                chunks.append(chunk)
        except requests.RequestException as exc:
            raise SourcesApiError(f"{method} {path}: {type(exc).__name__} while reading the answer") from None
        return b"".join(chunks)

    def _get(
        self,
        path: str,
        tenant: Tenant | None,
        params: dict[str, str | list[str]] | None = None,
        *,
        internal: bool = False,
    ) -> dict[str, Any]:
        response = self._request("GET", path, tenant, internal=internal, params=params or None)
        if response.status_code == 404 and "source not found" in response.text.lower():
            raise SourceNotFound(f"GET {path}: source not found")
        if response.status_code != 200:
            raise SourcesApiError(f"GET {path}: status {response.status_code}")
        try:
            payload = json.loads(response.content)
        except (ValueError, RecursionError):
            raise SourcesApiError(f"GET {path}: response is not JSON") from None
        if not isinstance(payload, dict):
            raise SourcesApiError(f"GET {path}: response is not a JSON object")
        return payload

    @staticmethod
    def _data(payload: dict[str, Any]) -> list[dict[str, Any]]:
        data = payload.get("data")
        return [row for row in data if isinstance(row, dict)] if isinstance(data, list) else []

    # -- calls ---------------------------------------------------------------------------------

    def cost_management_type_id(self) -> int:
        """The cost-management application type id (looked up, never assumed)."""
        data = self._data(self._get("application_types", None, {"filter[name]": COST_MANAGEMENT_APP_TYPE}))
        type_id = parse_id(data[0].get("id")) if len(data) == 1 else None
        if type_id is None:
            raise SourcesApiError("cost management application type id not found")
        return type_id

    def is_cost_management_source(self, app_type_id: int, source_id: int, tenant: Tenant) -> bool:
        path = f"application_types/{_id_segment(app_type_id)}/sources"
        return bool(self._data(self._get(path, tenant, {"filter[id]": str(_id_segment(source_id))})))

    def source_details(self, source_id: int, tenant: Tenant) -> SourceDetails:
        return _details(self._get(f"sources/{_id_segment(source_id)}", tenant))

    def source_type_name(self, type_id: int) -> str:
        data = self._data(self._get("source_types", None, {"filter[id]": str(_id_segment(type_id))}))
        name = data[0].get("name") if data else None
        if not isinstance(name, str) or len(name) > 100:
            raise SourcesApiError("source type name not found")
        return name

    def application(self, source_id: int, app_type_id: int, tenant: Tenant) -> Application | None:
        params: dict[str, str | list[str]] = {
            "filter[source_id]": str(_id_segment(source_id)),
            "filter[application_type_id]": str(app_type_id),
        }
        data = self._data(self._get("applications", tenant, params))
        return _application(data[0]) if data else None

    def authentication(self, source_id: int, authtype: str, tenant: Tenant) -> AuthenticationRecord | None:
        params: dict[str, str | list[str]] = {
            "filter[source_id]": str(_id_segment(source_id)),
            "filter[authtype]": authtype,
        }
        data = self._data(self._get("authentications", tenant, params))
        return _authentication(data[0]) if data else None

    def authentication_password(self, auth_id: int, tenant: Tenant) -> str | None:
        """The secret of an authentication (internal API); never logged."""
        path = f"authentications/{_id_segment(auth_id)}"
        payload = self._get(path, tenant, {"expose_encrypted_attribute[]": "password"}, internal=True)
        try:
            password = optional_text(payload.get("password"), "password")
        except BadValue as exc:
            raise _invalid(exc) from None
        return password or None

    # -- bulk reads (one call for many sources of one tenant; ids repeat as ``filter[x][]``) --------

    def _list_all(self, path: str, tenant: Tenant, params: dict[str, str | list[str]]) -> list[dict[str, Any]]:
        """Every row of a filtered collection, over pages; at most :data:`MAX_LIST_ROWS` rows.

        A ``meta.count`` that is not a count, or claims more than the cap, is refused before
        any further page is asked; paging also stops at an empty page or at the page cap.
        """
        rows: list[dict[str, Any]] = []
        for offset in range(0, MAX_LIST_ROWS, PAGE_SIZE):
            payload = self._get(path, tenant, {"limit": str(PAGE_SIZE), "offset": str(offset), **params})
            page = self._data(payload)
            meta = payload.get("meta")
            count = meta.get("count") if isinstance(meta, dict) else len(rows) + len(page)
            if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_LIST_ROWS:
                raise SourcesApiError(f"GET {path}: the answer's count is not plausible")
            rows += page[: MAX_LIST_ROWS - len(rows)]
            if not page or offset + PAGE_SIZE >= count:
                return rows
        return rows

    def sources_by_id(self, source_ids: list[int], tenant: Tenant) -> dict[int, SourceDetails]:
        rows = self._list_all("sources", tenant, {"filter[id][]": [str(_id_segment(i)) for i in source_ids]})
        found = {}
        for row, details in _parse_rows(rows, _details):
            source_id = _row_id(row, "id")
            if source_id is not None:
                found[source_id] = details
        return found

    def applications_by_source(self, source_ids: list[int], app_type_id: int, tenant: Tenant) -> dict[int, Application]:
        rows = self._list_all(
            "applications",
            tenant,
            {
                "filter[source_id][]": [str(_id_segment(i)) for i in source_ids],
                "filter[application_type_id]": str(app_type_id),
            },
        )
        found: dict[int, Application] = {}
        for row, app in sorted(_parse_rows(rows, _application), key=lambda pair: pair[1].id):
            source_id = _row_id(row, "source_id")
            if source_id is not None and source_id not in found:
                found[source_id] = app
        return found

    def authentications_by_application(
        self, application_ids: list[int], authtypes: list[str], tenant: Tenant
    ) -> dict[tuple[int, str], AuthenticationRecord]:
        """Authentications attached to the given applications, by (application id, authtype)."""
        rows = self._list_all(
            "authentications",
            tenant,
            {
                "filter[resource_type]": "Application",
                "filter[resource_id][]": [str(_id_segment(i)) for i in application_ids],
                "filter[authtype][]": authtypes,
            },
        )
        found: dict[tuple[int, str], AuthenticationRecord] = {}
        for row, auth in sorted(_parse_rows(rows, _authentication), key=lambda pair: pair[1].id):
            app_id, authtype = _row_id(row, "resource_id"), row.get("authtype")
            if app_id is not None and isinstance(authtype, str) and (app_id, authtype) not in found:
                found[(app_id, authtype)] = auth
        return found

    def patch_availability(self, application_id: int, status: dict[str, str], tenant: Tenant) -> bool:
        """PATCH the application's availability; False when the application is gone (404)."""
        path = f"applications/{_id_segment(application_id)}"
        response = self._request("PATCH", path, tenant, body=status)
        if response.status_code == 404:
            log.info("application %s no longer exists; status not sent", application_id)
            return False
        if not 200 <= response.status_code < 300:
            raise SourcesApiError(f"PATCH {path}: status {response.status_code}")
        return True


def _id_segment(value: Any) -> int:
    """``value`` as an id fit for a path or filter; anything else is refused before any request."""
    number = parse_id(value) if isinstance(value, int) else None
    if number is None:
        raise SourceDataError("Platform Sources gave an id that is not valid.")
    return number
