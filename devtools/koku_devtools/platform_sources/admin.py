"""Scripting client for the stand-in (or a real Platform Sources): creates cost sources the way
the console does, through the public write API, so that the service emits its usual events."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from koku_devtools.platform_sources.type_catalog import COST_MANAGEMENT

DEFAULT_ROLE_ARN = "arn:aws:iam::111122223333:role/CostManagement"
COST_KINDS = ("aws", "aws-local", "azure", "azure-local", "gcp", "gcp-local", "ocp")


def identity_header(org_id: str = "1234567", account: str = "10001") -> str:
    """Base64 JSON identity shaped like Koku's development default (an org-admin User)."""
    identity: dict[str, Any] = {
        "identity": {
            "account_number": account,
            "org_id": org_id,
            "type": "User",
            "user": {"username": "user_dev", "email": "user_dev@foo.com", "is_org_admin": True},
            "internal": {"org_id": org_id},
        },
        "entitlements": {"cost_management": {"is_entitled": True}},
    }
    return base64.b64encode(json.dumps(identity).encode()).decode()


class AdminError(RuntimeError):
    """A non-2xx answer; the message carries the status and the service's error detail."""

    def __init__(self, method: str, path: str, status: int, detail: str) -> None:
        super().__init__(f"{method} {path} -> {status}: {detail}")
        self.status = status
        self.detail = detail


# --------------------------------------------------------------------------- cost source shapes

#: ``(authtype, username, password, extra)`` of a cost source's authentication.
AuthenticationShape = tuple[str, str, str | None, dict[str, Any] | None]


@dataclass
class _CostSourceShape:
    """What a cost source of one kind is made of."""

    source_type: str
    extra: dict[str, Any] | None
    authentication: AuthenticationShape | None
    source_ref: str | None = None


class _Details:
    """The keyword details of :meth:`StandInAdmin.create_cost_source`, consumed as they are read."""

    def __init__(self, kind: str, details: dict[str, Any]) -> None:
        self.kind = kind
        self.left = details

    def take(self, *keys: str) -> dict[str, Any]:
        """The given optional details that were passed."""
        return {k: self.left.pop(k) for k in keys if k in self.left}

    def need(self, key: str, default: Any = None) -> Any:
        """A detail, else ``default``; without a default the detail is required."""
        if key in self.left:
            return self.left.pop(key)
        if default is None:
            raise TypeError(f"{self.kind} sources need {key}=")
        return default


def _aws_shape(details: _Details, local: bool, name: str) -> _CostSourceShape:
    extra = {"bucket": details.need("bucket", None if local else "koku-cur-bucket")}
    extra.update(details.take("bucket_region", "storage_only", "metered"))
    role_arn = details.left.pop("role_arn", DEFAULT_ROLE_ARN)
    external_id = details.left.pop("external_id", None)
    auth = ("arn", role_arn, None, {"external_id": external_id} if external_id else None)
    return _CostSourceShape("amazon-local" if local else "amazon", extra, auth)


def _azure_shape(details: _Details, local: bool, name: str) -> _CostSourceShape:
    extra = {
        "resource_group": details.need("resource_group", "koku-resource-group"),
        "storage_account": details.need("storage_account", None if local else "kokustorageaccount"),
        "subscription_id": details.need("subscription_id", "11111111-1111-1111-1111-111111111111"),
    }
    extra.update(details.take("scope", "export_name", "storage_only", "metered"))
    auth = (
        "tenant_id_client_id_client_secret",
        details.need("client_id", "22222222-2222-2222-2222-222222222222"),
        details.need("client_secret", "not-a-real-client-secret"),
        {"azure": {"tenant_id": details.need("tenant_id", "33333333-3333-3333-3333-333333333333")}},
    )
    return _CostSourceShape("azure-local" if local else "azure", extra, auth)


def _gcp_shape(details: _Details, local: bool, name: str) -> _CostSourceShape:
    if local:
        extra = {"bucket": details.need("bucket")}
        extra.update(details.take("dataset", "storage_only"))
    else:
        extra = {"dataset": details.need("dataset", "billing_export")}
        extra.update(details.take("bucket", "storage_only"))
    auth = ("project_id_service_account_json", details.need("project_id", "koku-gcp-project"), None, None)
    return _CostSourceShape("google-local" if local else "google", extra, auth)


def _ocp_shape(details: _Details, local: bool, name: str) -> _CostSourceShape:
    return _CostSourceShape("openshift", None, None, source_ref=details.need("cluster_id", f"{name}-cluster"))


_SHAPES: dict[str, Callable[[_Details, bool, str], _CostSourceShape]] = {
    "aws": _aws_shape,
    "azure": _azure_shape,
    "gcp": _gcp_shape,
    "ocp": _ocp_shape,
}


def _cost_source_shape(kind: str, name: str, details: dict[str, Any]) -> _CostSourceShape:
    """The shape of a ``kind`` source from its details (every detail must be used)."""
    more_extra = details.pop("extra", None) or {}
    reader = _Details(kind, details)
    shape = _SHAPES[kind.removesuffix("-local")](reader, kind.endswith("-local"), name)
    if reader.left:
        raise TypeError(f"unknown details for {kind}: {', '.join(sorted(reader.left))}")
    if more_extra:
        shape.extra = {**(shape.extra or {}), **more_extra}
    return shape


# --------------------------------------------------------------------------- the client


class StandInAdmin:
    """Creates, changes and deletes sources through the public REST API."""

    def __init__(
        self,
        base_url: str,
        org_id: str = "1234567",
        account: str = "10001",
        psk: str | None = "sources-psk",
        identity: str | None = None,
        *,
        prefix: str = "/api/sources/v3.1",
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.prefix = prefix
        self.org_id = org_id
        self.account = account
        self.timeout = timeout
        self.identity = identity if identity is not None else identity_header(org_id, account)
        self.session = requests.Session()
        headers = {"x-rh-sources-org-id": org_id}
        if account:
            headers["x-rh-sources-account-number"] = account
        if psk:
            headers["x-rh-sources-psk"] = psk
        if self.identity:
            headers["x-rh-identity"] = self.identity
        self.session.headers.update(headers)

    def __repr__(self) -> str:
        return f"StandInAdmin({self.base_url!r}, org_id={self.org_id!r}, account={self.account!r})"

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()

    # ------------------------------------------------------------------ raw access

    def request(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        """Call ``prefix + path``; returns the decoded JSON (None for an empty body)."""
        url = f"{self.base_url}{self.prefix}/{path.lstrip('/')}"
        resp = self.session.request(method, url, json=body, params=params, timeout=self.timeout)
        if resp.status_code >= 400:
            try:
                detail = resp.json()["errors"][0]["detail"]
            except (ValueError, KeyError, IndexError, TypeError):
                detail = resp.text[:200]
            raise AdminError(method, path, resp.status_code, detail)
        return resp.json() if resp.content else None

    def get(self, path: str, **params: Any) -> Any:
        """GET ``path`` with query parameters."""
        return self.request("GET", path, params=params or None)

    # ------------------------------------------------------------------ lookups

    def source_type_id(self, name: str) -> int:
        """Id of the source type called ``name``."""
        data = self.get("source_types", **{"filter[name]": name})["data"]
        if len(data) != 1:
            raise LookupError(f"source type {name!r} not found")
        return int(data[0]["id"])

    def application_type_id(self, name: str = COST_MANAGEMENT) -> int:
        """Id of the application type called ``name`` (cost management by default)."""
        data = self.get("application_types", **{"filter[name]": name})["data"]
        if len(data) != 1:
            raise LookupError(f"application type {name!r} not found")
        return int(data[0]["id"])

    def get_source(self, source_id: int | str) -> dict[str, Any]:
        """GET sources/:id."""
        return self.get(f"sources/{source_id}")

    def cost_application(self, source_id: int | str) -> dict[str, Any] | None:
        """The source's cost-management application, if any."""
        data = self.get(
            "applications",
            **{"filter[source_id]": source_id, "filter[application_type_id]": self.application_type_id()},
        )["data"]
        return data[0] if data else None

    # ------------------------------------------------------------------ writes

    def create_source(
        self,
        name: str,
        source_type_name: str,
        uid: str | None = None,
        source_ref: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """POST sources."""
        body: dict[str, Any] = {"name": name, "source_type_id": str(self.source_type_id(source_type_name))}
        if uid is not None:
            body["uid"] = uid
        if source_ref is not None:
            body["source_ref"] = source_ref
        body.update(fields)
        return self.request("POST", "sources", body)

    def add_cost_application(self, source_id: int | str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST applications of the cost-management type (no ``extra`` key when None)."""
        body: dict[str, Any] = {"source_id": str(source_id), "application_type_id": str(self.application_type_id())}
        if extra is not None:
            body["extra"] = extra
        return self.request("POST", "applications", body)

    def add_authentication(
        self,
        resource_id: int | str,
        authtype: str,
        username: str,
        password: str | None = None,
        extra: dict[str, Any] | None = None,
        resource_type: str = "Application",
    ) -> dict[str, Any]:
        """POST authentications on an application (default), source or endpoint."""
        body: dict[str, Any] = {
            "resource_type": resource_type,
            "resource_id": str(resource_id),
            "authtype": authtype,
            "username": username,
        }
        if password is not None:
            body["password"] = password
        if extra is not None:
            body["extra"] = extra
        return self.request("POST", "authentications", body)

    def link_authentication(self, application_id: int | str, authentication_id: int | str) -> dict[str, Any]:
        """POST application_authentications."""
        body = {"application_id": str(application_id), "authentication_id": str(authentication_id)}
        return self.request("POST", "application_authentications", body)

    def update_source(self, source_id: int | str, **fields: Any) -> dict[str, Any]:
        """PATCH sources/:id (name, source_ref, ...)."""
        return self.request("PATCH", f"sources/{source_id}", fields)

    def update_application_extra(self, application_id: int | str, extra: dict[str, Any]) -> dict[str, Any]:
        """PATCH applications/:id with a whole new ``extra``."""
        return self.request("PATCH", f"applications/{application_id}", {"extra": extra})

    def set_application_status(self, application_id: int | str, status: str, error: str = "") -> dict[str, Any]:
        """PATCH applications/:id availability status, as an application would."""
        body = {"availability_status": status, "availability_status_error": error}
        return self.request("PATCH", f"applications/{application_id}", body)

    def update_authentication(self, authentication_id: int | str, **fields: Any) -> dict[str, Any]:
        """PATCH authentications/:id (username, password, extra, ...)."""
        return self.request("PATCH", f"authentications/{authentication_id}", fields)

    def pause_source(self, source_id: int | str) -> None:
        """POST sources/:id/pause."""
        self.request("POST", f"sources/{source_id}/pause")

    def unpause_source(self, source_id: int | str) -> None:
        """POST sources/:id/unpause."""
        self.request("POST", f"sources/{source_id}/unpause")

    def pause_application(self, application_id: int | str) -> None:
        """POST applications/:id/pause."""
        self.request("POST", f"applications/{application_id}/pause")

    def unpause_application(self, application_id: int | str) -> None:
        """POST applications/:id/unpause."""
        self.request("POST", f"applications/{application_id}/unpause")

    def delete_source(self, source_id: int | str) -> None:
        """DELETE sources/:id (cascades)."""
        self.request("DELETE", f"sources/{source_id}")

    def delete_application(self, application_id: int | str) -> None:
        """DELETE applications/:id (cascades)."""
        self.request("DELETE", f"applications/{application_id}")

    def delete_authentication(self, authentication_id: int | str) -> None:
        """DELETE authentications/:id."""
        self.request("DELETE", f"authentications/{authentication_id}")

    def create_cost_source(self, kind: str, name: str, **details: Any) -> dict[str, Any]:
        """Create a source of ``kind`` (one of :data:`COST_KINDS`) with its cost application.

        Details (defaults in brackets; ``*`` = required):
        aws: bucket [koku-cur-bucket], role_arn, external_id, bucket_region, storage_only;
        aws-local: bucket* (a directory), role_arn, external_id;
        azure: resource_group, storage_account, subscription_id, client_id, client_secret, tenant_id,
        scope, export_name; azure-local: as azure with storage_account* (a directory);
        gcp: dataset [billing_export], project_id, bucket; gcp-local: bucket* (a directory), project_id,
        dataset; ocp: cluster_id [``{name}-cluster``]. All kinds accept uid and ``extra`` (merged
        into the application extra). Returns ``{"source", "application", "authentication",
        "application_authentication"}`` (the last two None for ocp).
        """
        kind = kind.lower()
        if kind not in COST_KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(COST_KINDS)}")
        uid = details.pop("uid", None)
        shape = _cost_source_shape(kind, name, details)
        source = self.create_source(name, shape.source_type, uid=uid, source_ref=shape.source_ref)
        application = self.add_cost_application(source["id"], shape.extra)
        authentication = link = None
        if shape.authentication is not None:
            authtype, username, password, auth_extra = shape.authentication
            authentication = self.add_authentication(application["id"], authtype, username, password, auth_extra)
            link = self.link_authentication(application["id"], authentication["id"])
        return {
            "source": source,
            "application": application,
            "authentication": authentication,
            "application_authentication": link,
        }
