"""Stand-ins for Microsoft Entra ID (client-credentials tokens) and the Cost Management exports API.

One HTTPS server (stdlib ``http.server`` in a thread) answers both, so it is at once the authority
host and the management URL of the Azure SDKs::

    credential = ClientSecretCredential(tenant_id, client_id, client_secret,
                                        authority=standin.authority_host, disable_instance_discovery=True,
                                        connection_verify=str(tls.ca_path))
    exports = CostManagementClient(credential, base_url=standin.management_url,
                                   credential_scopes=[standin.management_scope],
                                   connection_verify=str(tls.ca_path)).exports.list(scope)

``disable_instance_discovery=True`` is needed: MSAL would otherwise validate the authority against
``login.microsoftonline.com``. Tokens are JWTs shaped as Entra ID's v1 access tokens (``iss``
``https://sts.windows.net/{tenant}/``, ``aud`` the requested resource, ``tid``, ``appid``, ``nbf``,
``exp``) and HMAC-signed with a per-server key, so Azurite's ``--oauth basic`` accepts the storage
ones and this server verifies the management ones. Errors follow Entra ID's and ARM's shapes: an
unknown tenant (400 ``invalid_tenant``), an unknown client (400 ``unauthorized_client``), a wrong
secret (401 ``invalid_client``), a missing or bad bearer token (401 ``InvalidAuthenticationToken``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from koku_devtools.platform_sources.http_server import StandInHttpServer
from koku_devtools.services.processes import LOOPBACK, Service
from koku_devtools.services.tls import LocalTls

log = logging.getLogger(__name__)

STORAGE_AUDIENCE = "https://storage.azure.com"
TOKEN_LIFETIME_SECONDS = 3600
_JSON = "application/json; charset=utf-8"
_OPENID = re.compile(r"^/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration$")
_TOKEN = re.compile(r"^/(?P<tenant>[^/]+)/oauth2/v2\.0/token$")
_EXPORTS = re.compile(
    r"^(?P<scope>/.+?)/providers/Microsoft\.CostManagement/exports(?:/(?P<name>[^/]+))?/?$", re.IGNORECASE
)

Answer = tuple[int, str, bytes]


def storage_account_id(subscription_id: str, resource_group: str, account: str) -> str:
    """ARM resource id of a storage account (an export destination's ``resourceId``)."""
    return (
        f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.Storage/storageAccounts/{account}"
    )


@dataclass(frozen=True)
class CostExport:
    """One registered Cost Management export (the fields Koku reads, plus a plausible definition)."""

    scope: str
    name: str
    storage_account_resource_id: str
    container: str
    root_folder_path: str
    definition_type: str = "ActualCost"
    timeframe: str = "MonthToDate"

    def document(self) -> dict[str, Any]:
        """The export as the REST API returns it (``Export`` of ``azure-mgmt-costmanagement``)."""
        return {
            "id": f"{self.scope}/providers/Microsoft.CostManagement/exports/{self.name}",
            "name": self.name,
            "type": "Microsoft.CostManagement/exports",
            "eTag": '"1"',
            "properties": {
                "format": "Csv",
                "deliveryInfo": {
                    "destination": {
                        "resourceId": self.storage_account_resource_id,
                        "container": self.container,
                        "rootFolderPath": self.root_folder_path,
                    }
                },
                "definition": {
                    "type": self.definition_type,
                    "timeframe": self.timeframe,
                    "dataSet": {"granularity": "Daily"},
                },
                "schedule": {
                    "status": "Active",
                    "recurrence": "Daily",
                    "recurrencePeriod": {"from": "2020-01-01T00:00:00Z", "to": "2099-12-31T00:00:00Z"},
                },
                "partitionData": True,
            },
        }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_JWT_HEADER = _b64(b'{"alg":"HS256","typ":"JWT"}')


def _json(status: int, doc: Any) -> Answer:
    return status, _JSON, json.dumps(doc).encode()


def _scope_key(scope: str) -> str:
    return "/" + scope.strip("/").lower()


class _TlsHttpServer(StandInHttpServer):
    """The stand-in HTTP transport over TLS; each handshake runs in its connection's own thread."""

    def __init__(self, address: tuple[str, int], answer: Any, context: ssl.SSLContext) -> None:
        super().__init__(address, answer)
        self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(self.keep_alive_seconds)
        try:
            request.do_handshake()
        except (OSError, ssl.SSLError) as exc:
            log.debug("TLS handshake with %s failed: %r", client_address, exc)
            return
        super().finish_request(request, client_address)


class AzureStandIn(Service):
    """Entra ID token endpoint and Cost Management exports API on ``https://127.0.0.1:{port}``.

    Register service principals with :meth:`register_app` and exports with :meth:`add_export`.
    """

    name = "azure-standin"

    def __init__(self, tls: LocalTls, port: int = 0) -> None:
        self.tls = tls
        self.port = port
        self._key = secrets.token_bytes(32)
        self._apps: dict[tuple[str, str], str] = {}  # (tenant, client id) -> secret
        self._exports: dict[str, dict[str, CostExport]] = {}  # scope key -> lower-case name -> export
        self._lock = threading.Lock()
        self._httpd: _TlsHttpServer | None = None
        self._thread: threading.Thread | None = None
        self.token_requests = 0  # answered token requests (granted or refused)

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def url(self) -> str:
        """``https://127.0.0.1:{port}``."""
        return f"https://{LOOPBACK}:{self.port}"

    @property
    def authority_host(self) -> str:
        """``authority=`` of ``ClientSecretCredential`` (setting ``KOKU_AZURE_AUTHORITY_HOST``)."""
        return self.url

    @property
    def management_url(self) -> str:
        """``base_url`` of the management clients (setting ``KOKU_AZURE_MANAGEMENT_URL``)."""
        return self.url

    @property
    def management_scope(self) -> str:
        """Token scope for the management API: ``{management_url}/.default``."""
        return f"{self.management_url}/.default"

    def start(self, timeout: float | None = None) -> Self:
        if self._httpd is not None:
            return self
        httpd = _TlsHttpServer((LOOPBACK, self.port), self._answer, self.tls.server_context())
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"azure-standin-{self.port}", daemon=True
        )
        self._thread.start()
        self._register()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
            httpd.close_connections()
        if thread is not None:
            thread.join(timeout=timeout)
        self._unregister()

    # ------------------------------------------------------------------ registration

    def register_app(self, tenant_id: str, client_id: str, client_secret: str) -> None:
        """Let ``client_id`` with ``client_secret`` get tokens in ``tenant_id`` (replacing an earlier secret)."""
        with self._lock:
            self._apps[(tenant_id.lower(), client_id.lower())] = client_secret

    def add_export(
        self,
        scope: str,
        name: str,
        *,
        storage_account_resource_id: str,
        container: str,
        root_folder_path: str,
        definition_type: str = "ActualCost",
    ) -> CostExport:
        """Register (or replace) export ``name`` at ``scope`` (e.g. ``/subscriptions/{id}``)."""
        export = CostExport(
            "/" + scope.strip("/"), name, storage_account_resource_id, container, root_folder_path, definition_type
        )
        with self._lock:
            self._exports.setdefault(_scope_key(scope), {})[name.lower()] = export
        return export

    def remove_export(self, scope: str, name: str) -> None:
        """Forget export ``name`` at ``scope`` (no error when it is not there)."""
        with self._lock:
            self._exports.get(_scope_key(scope), {}).pop(name.lower(), None)

    # ------------------------------------------------------------------ HTTP

    def _answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        path = urlsplit(target).path
        if method == "GET" and (m := _OPENID.match(path)):
            return self._openid_configuration(m["tenant"])
        if method == "POST" and (m := _TOKEN.match(path)):
            return self._token(m["tenant"], {k: v[0] for k, v in parse_qs(body.decode()).items()})
        if method == "GET" and (m := _EXPORTS.match(path)):
            return self._exports_api(m["scope"], m["name"], headers.get("authorization", ""))
        return _json(404, {"error": {"code": "NotFound", "message": f"No route for {method} {path}."}})

    def _known_tenant(self, tenant: str) -> bool:
        with self._lock:
            return any(t == tenant.lower() for t, _ in self._apps)

    def _entra_error(self, status: int, error: str, code: int, message: str) -> Answer:
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return _json(status, {
            "error": error,
            "error_description": f"AADSTS{code}: {message} Trace ID: {trace} Correlation ID: {correlation} "
                                 f"Timestamp: {now}",
            "error_codes": [code],
            "timestamp": now,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"{self.url}/error?code={code}",
        })  # fmt: skip

    def _openid_configuration(self, tenant: str) -> Answer:
        if not self._known_tenant(tenant):
            return self._entra_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        base = f"{self.url}/{tenant}"
        return _json(200, {
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "tenant_region_scope": None,
        })  # fmt: skip

    def _token(self, tenant: str, form: dict[str, str]) -> Answer:
        with self._lock:
            self.token_requests += 1
        if not self._known_tenant(tenant):
            return self._entra_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return self._entra_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant.")
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        with self._lock:
            expected = self._apps.get((tenant.lower(), client_id.lower()))
        if expected is None:
            return self._entra_error(
                400, "unauthorized_client", 700016,
                f"Application with identifier '{client_id}' was not found in the directory '{tenant}'.",
            )  # fmt: skip
        if not hmac.compare_digest(expected.encode(), secret.encode()):
            return self._entra_error(
                401, "invalid_client", 7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
                f"value, not the client secret ID, for a secret added to app '{client_id}'.",
            )  # fmt: skip
        scope = form.get("scope", "").split()
        resources = [s.removesuffix("/.default") for s in scope if s.endswith("/.default")]
        if len(resources) != 1:
            message = f"The provided value for scope {' '.join(scope)} is not valid."
            return self._entra_error(400, "invalid_scope", 1002012, message)
        token = self.issue_token(tenant, client_id, resources[0])
        return _json(200, {
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_SECONDS - 1,
            "ext_expires_in": TOKEN_LIFETIME_SECONDS - 1,
            "access_token": token,
        })  # fmt: skip

    def issue_token(self, tenant: str, client_id: str, audience: str, lifetime: int = TOKEN_LIFETIME_SECONDS) -> str:
        """A signed access token for ``audience`` (e.g. :data:`STORAGE_AUDIENCE`), as the token endpoint grants."""
        now = int(time.time())
        object_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tenant}/{client_id}"))
        claims = {
            "aud": audience, "iss": f"https://sts.windows.net/{tenant}/", "iat": now, "nbf": now - 60,
            "exp": now + lifetime, "tid": tenant, "appid": client_id, "appidacr": "1", "oid": object_id,
            "sub": object_id, "idtyp": "app", "ver": "1.0", "uti": secrets.token_urlsafe(16),
        }  # fmt: skip
        signing_input = f"{_JWT_HEADER}.{_b64(json.dumps(claims).encode())}"
        signature = hmac.new(self._key, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(signature)}"

    def _verified_claims(self, authorization: str) -> dict[str, Any] | None:
        """The claims of a bearer token this server issued for the management API and not expired, else None."""
        scheme, _, token = authorization.partition(" ")
        parts = token.strip().split(".")
        if scheme.lower() != "bearer" or len(parts) != 3:
            return None
        expected = hmac.new(self._key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(expected, _unb64(parts[2])):
                return None
            claims: dict[str, Any] = json.loads(_unb64(parts[1]))
        except ValueError:
            return None
        now = time.time()
        audience_ok = str(claims.get("aud", "")).rstrip("/") == self.management_url
        return claims if audience_ok and claims.get("nbf", now) <= now < claims.get("exp", 0) else None

    def _exports_api(self, scope: str, name: str | None, authorization: str) -> Answer:
        if self._verified_claims(authorization) is None:
            return _json(401, {"error": {
                "code": "InvalidAuthenticationToken",
                "message": "The access token is invalid." if authorization else
                           "The request does not contain a valid bearer token.",
            }})  # fmt: skip
        with self._lock:
            exports = dict(self._exports.get(_scope_key(scope), {}))
        if name is None:
            return _json(200, {"value": [e.document() for e in exports.values()]})
        if (export := exports.get(name.lower())) is None:
            return _json(404, {"error": {"code": "NotFound", "message": f"Export '{name}' was not found."}})
        return _json(200, export.document())
