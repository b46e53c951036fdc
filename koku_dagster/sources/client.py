"""Platform Sources REST client with Koku's error classification (see docs/sources.md).

One pooled ``requests.Session`` per client (connections kept alive), timeouts on every call;
no cookies are sent (Platform Sources authenticates by header). Error texts name the
path and status only: never headers, bodies or secrets.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from koku_dagster.sources.errors import SourceDataError, SourceNotFound, SourcesApiError
from koku_dagster.sources.model import Application, AuthenticationRecord, SourceDetails, Tenant

log = logging.getLogger(__name__)

COST_MANAGEMENT_APP_TYPE = "/insights/platform/cost-management"
#: Paths built from our own ids and names only: safe to append to a prepared base URL as is.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)*")
#: Request templates kept (one per method and tenant); all are dropped when full.
_MAX_TEMPLATES = 1024


def _opt_int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _text(row: dict[str, Any], key: str) -> str | None:
    value = row.get(key)
    return value if isinstance(value, str) else None


def _details(row: dict[str, Any]) -> SourceDetails:
    return SourceDetails(
        name=_text(row, "name"),
        source_type_id=_opt_int(row.get("source_type_id")),
        uid=_text(row, "uid"),
        source_ref=_text(row, "source_ref"),
    )


def _authentication(row: dict[str, Any]) -> AuthenticationRecord:
    extra = row.get("extra")
    return AuthenticationRecord(
        id=str(row.get("id") or ""),
        username=_text(row, "username") or "",
        extra=extra if isinstance(extra, dict) else {},
    )


class SourcesClient:
    """Calls the Platform Sources public and internal APIs."""

    def __init__(
        self,
        api_base: str,
        internal_base: str,
        psk: str,
        *,
        timeout: tuple[float, float] = (3.0, 10.0),
        pool_size: int = 16,
    ) -> None:
        self.api_base = api_base.rstrip("/")
        self.internal_base = internal_base.rstrip("/")
        self._psk = psk
        self.timeout = timeout
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
        path: str,
        tenant: Tenant | None,
        params: dict[str, str | list[str]] | None,
        body: dict[str, Any] | None,
    ) -> requests.PreparedRequest:
        """The request to send: the session's default headers plus :meth:`_headers`, never cookies.

        A call without query parameters to a plain path (the status PATCHes, most of the calls)
        copies a template prepared once per (method, tenant) and sets only its URL and body:
        preparing a request from scratch costs about a third of a loopback call's CPU.
        """
        if params or not self._plain_bases or not _PLAIN_PATH.fullmatch(path):
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
        url = (self.internal_base if internal else self.api_base) + "/" + path
        try:
            prepared = self._prepare(method, url, path, tenant, params, body)
            return self.session.send(
                prepared, timeout=self.timeout, proxies=self.session.proxies, verify=self.session.verify
            )
        except requests.RequestException as exc:
            raise SourcesApiError(f"{method} {path}: {type(exc).__name__} (Platform Sources unreachable)") from None

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
            payload = response.json()
        except (ValueError, json.JSONDecodeError):
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
        type_id = _opt_int(data[0].get("id")) if len(data) == 1 else None
        if type_id is None:
            raise SourcesApiError("cost management application type id not found")
        return type_id

    def is_cost_management_source(self, app_type_id: int, source_id: int, tenant: Tenant) -> bool:
        payload = self._get(f"application_types/{app_type_id}/sources", tenant, {"filter[id]": str(source_id)})
        return bool(self._data(payload))

    def source_details(self, source_id: int, tenant: Tenant) -> SourceDetails:
        return _details(self._get(f"sources/{source_id}", tenant))

    def source_type_name(self, type_id: int) -> str:
        data = self._data(self._get("source_types", None, {"filter[id]": str(type_id)}))
        name = data[0].get("name") if data else None
        if not isinstance(name, str):
            raise SourcesApiError("source type name not found")
        return name

    def application(self, source_id: int, app_type_id: int, tenant: Tenant) -> Application | None:
        payload = self._get(
            "applications",
            tenant,
            {"filter[source_id]": str(source_id), "filter[application_type_id]": str(app_type_id)},
        )
        data = self._data(payload)
        if not data:
            return None
        app_id = _opt_int(data[0].get("id"))
        if app_id is None:
            raise SourcesApiError("application has no id")
        extra = data[0].get("extra")
        return Application(id=app_id, extra=extra if isinstance(extra, dict) else {})

    def authentication(self, source_id: int, authtype: str, tenant: Tenant) -> AuthenticationRecord | None:
        payload = self._get(
            "authentications", tenant, {"filter[source_id]": str(source_id), "filter[authtype]": authtype}
        )
        data = self._data(payload)
        return _authentication(data[0]) if data else None

    def authentication_password(self, auth_id: str, tenant: Tenant) -> str | None:
        """The secret of an authentication (internal API); never logged."""
        if not auth_id:
            raise SourceDataError("authentication has no id")
        payload = self._get(
            f"authentications/{auth_id}", tenant, {"expose_encrypted_attribute[]": "password"}, internal=True
        )
        password = payload.get("password")
        return password if isinstance(password, str) and password else None

    # -- bulk reads (one call for many sources of one tenant; ids repeat as ``filter[x][]``) --------

    def _list_all(self, path: str, tenant: Tenant, params: dict[str, str | list[str]]) -> list[dict[str, Any]]:
        """Every row of a filtered collection, following ``meta.count`` over pages."""
        rows: list[dict[str, Any]] = []
        limit, offset = 1000, 0
        while True:
            payload = self._get(path, tenant, {"limit": str(limit), "offset": str(offset), **params})
            page = self._data(payload)
            rows += page
            meta = payload.get("meta")
            count = meta.get("count") if isinstance(meta, dict) else None
            if not isinstance(count, int):
                count = len(rows)
            offset += limit
            if not page or offset >= count:
                return rows

    def sources_by_id(self, source_ids: list[int], tenant: Tenant) -> dict[int, SourceDetails]:
        rows = self._list_all("sources", tenant, {"filter[id][]": [str(i) for i in source_ids]})
        found = {}
        for row in rows:
            source_id = _opt_int(row.get("id"))
            if source_id is not None:
                found[source_id] = _details(row)
        return found

    def applications_by_source(self, source_ids: list[int], app_type_id: int, tenant: Tenant) -> dict[int, Application]:
        rows = self._list_all(
            "applications",
            tenant,
            {"filter[source_id][]": [str(i) for i in source_ids], "filter[application_type_id]": str(app_type_id)},
        )
        found: dict[int, Application] = {}
        for row in sorted(rows, key=lambda r: _opt_int(r.get("id")) or 0):
            source_id, app_id = _opt_int(row.get("source_id")), _opt_int(row.get("id"))
            if source_id is not None and app_id is not None and source_id not in found:
                extra = row.get("extra")
                found[source_id] = Application(id=app_id, extra=extra if isinstance(extra, dict) else {})
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
                "filter[resource_id][]": [str(i) for i in application_ids],
                "filter[authtype][]": authtypes,
            },
        )
        found: dict[tuple[int, str], AuthenticationRecord] = {}
        for row in sorted(rows, key=lambda r: str(r.get("id"))):
            app_id, authtype = _opt_int(row.get("resource_id")), row.get("authtype")
            if app_id is not None and isinstance(authtype, str) and (app_id, authtype) not in found:
                found[(app_id, authtype)] = _authentication(row)
        return found

    def patch_availability(self, application_id: int, status: dict[str, str], tenant: Tenant) -> bool:
        """PATCH the application's availability; False when the application is gone (404)."""
        path = f"applications/{application_id}"
        response = self._request("PATCH", path, tenant, body=status)
        if response.status_code == 404:
            log.info("application %s no longer exists; status not sent", application_id)
            return False
        if not 200 <= response.status_code < 300:
            raise SourcesApiError(f"PATCH {path}: status {response.status_code}")
        return True
