"""HTTP server of the Platform Sources stand-in (``http.server``, HTTP/1.1 keep-alive, one thread per connection).

Serves the public API under ``/api/sources/{v1.0,v2.0,v3.0,v3.1,v1,v2,v3}``, the internal API under
``/internal/{v1.0,v2.0}`` and ``/health``. Writes publish the service's events to Kafka (when a
bootstrap server is given) and always record them in :attr:`StandInServer.events`.
A few ``/_standin/*`` control routes exist for out-of-process use (faults, events, reset).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, quote, urlsplit

from koku_dagster.devtools.platform_sources.store import (
    COST_MANAGEMENT,
    ApiError,
    Event,
    ListQuery,
    Store,
    Tenant,
    bad_request,
    parse_list_query,
    render_application,
    render_application_authentication,
    render_application_type,
    render_authentication,
    render_authentication_internal,
    render_endpoint,
    render_source,
    render_source_type,
    select,
    to_id,
)

log = logging.getLogger(__name__)

DEFAULT_TOPIC = "platform.sources.event-stream"
API_VERSIONS = ("v1.0", "v2.0", "v3.0", "v3.1", "v1", "v2", "v3")
INTERNAL_VERSIONS = ("v1.0", "v2.0")
_PREFIX = re.compile(
    r"^(?P<prefix>/api/sources/(?:v1\.0|v2\.0|v3\.0|v3\.1|v1|v2|v3)|/internal/(?:v1\.0|v2\.0))"
    r"(?:/(?P<rest>.*))?$"
)
#: An idle kept-alive connection is closed after this many seconds.
KEEP_ALIVE_SECONDS = 10.0
#: Connections served at once (one thread each); further ones wait in the listen queue.
MAX_CONNECTIONS = 128
_SECRET_HEADERS = frozenset({"x-rh-identity", "x-rh-sources-psk", "authorization", "cookie"})


class RecordedEvent(NamedTuple):
    """An event as published: type, ordered Kafka headers, and the JSON body."""

    event_type: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def key(self) -> str:
        """The Kafka key: org id, else account number, else the identity header."""
        h = self.headers
        return h.get("x-rh-sources-org-id") or h.get("x-rh-sources-account-number") or h["x-rh-identity"]

    def __repr__(self) -> str:
        shown = {k: ("***" if k in _SECRET_HEADERS else v) for k, v in self.headers.items()}
        return f"RecordedEvent({self.event_type!r}, {shown!r}, {self.body!r})"


@dataclass
class RecordedRequest:
    """One API request received (headers are kept in full but left out of ``repr``)."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str] = field(repr=False)
    body: Any = None
    status: int | None = None


@dataclass
class _Context:
    """Identity and tenancy of one request."""

    raw_identity: str | None
    identity: dict[str, Any]
    org_id: str
    account: str
    forward_org_id: str
    forward_account: str
    psk: str | None

    @property
    def forward_identity(self) -> str:
        """The raw header, or the one the service generates from org/account."""
        if self.raw_identity:
            return self.raw_identity
        return system_identity_header(self.forward_org_id or self.org_id, self.forward_account or self.account)

    @property
    def cert_auth(self) -> bool:
        system = self.identity.get("identity", {}).get("system")
        return isinstance(system, dict) and bool(system)


@dataclass
class _Call:
    """What a route handler gets."""

    ctx: _Context
    tenant: Tenant | None
    params: dict[str, int]
    path: str
    query: list[tuple[str, str]]
    body: Any
    headers: dict[str, str]


@dataclass
class _Reply:
    """What a route handler returns."""

    status: int
    payload: Any = None
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True)
class _Route:
    method: str
    scope: str  # "api" or "internal"
    pattern: re.Pattern[str]
    handler: Callable[[_Call], _Reply]
    access: str  # "open", "tenant", "write", "internal"


def system_identity_header(org_id: str, account: str) -> str:
    """Base64 of the identity the service generates for header-only callers."""
    ident: dict[str, Any] = {}
    if account:
        ident["account_number"] = account
    ident.update({"org_id": org_id, "internal": {"org_id": ""}, "type": "System"})
    text = json.dumps({"identity": ident, "entitlements": None}, separators=(",", ":"))
    return base64.b64encode(text.encode()).decode()


def _error_body(status: int, detail: str, request_id: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"detail": detail, "status": str(status)}
    if request_id:
        error["request_id"] = request_id
    return {"errors": [error]}


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _link(path: str, pairs: Sequence[tuple[str, str]], limit: int, offset: int) -> str:
    kept = [(k, v) for k, v in pairs if k not in ("limit", "offset")]
    kept += [("limit", str(limit)), ("offset", str(offset))]
    kept.sort(key=lambda kv: kv[0])
    return path + "?" + "&".join(f"{k}={quote(v, safe='/[]:,')}" for k, v in kept)


class StandInServer:
    """A faithful-enough Platform Sources service for tests and ``make demo``.

    ``start()`` binds and serves in a background thread; ``stop()`` closes the socket; a later
    ``start()`` binds the same port again with the same data.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        psk: str = "sources-psk",
        kafka_bootstrap: str | None = None,
        topic: str = DEFAULT_TOPIC,
        *,
        publish_async: bool = False,
        honor_uid: bool = True,
        check_psk_on_reads: bool = False,
        flush_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.psks = frozenset(p.strip() for p in psk.split(",") if p.strip())
        self.kafka_bootstrap = kafka_bootstrap
        self.topic = topic
        self.publish_async = publish_async
        self.check_psk_on_reads = check_psk_on_reads
        self.flush_timeout = flush_timeout
        self.store = Store(honor_uid=honor_uid)
        self.events: list[RecordedEvent] = []
        self.requests: list[RecordedRequest] = []
        self._log_lock = threading.Lock()
        self._faults: list[tuple[int, str | None]] = []
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._producer: Any = None
        self._routes = self._build_routes()

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """``http://host:port`` (the port is known once started)."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._httpd is not None

    def start(self) -> StandInServer:
        """Listen and serve in a daemon thread; returns once the socket is bound."""
        if self._httpd is not None:
            return self
        if self.kafka_bootstrap and self._producer is None:
            from confluent_kafka import Producer

            self._producer = Producer(
                {
                    "bootstrap.servers": self.kafka_bootstrap,
                    "client.id": "platform-sources-standin",
                    "message.timeout.ms": int(self.flush_timeout * 1000),
                    "log_level": 2,  # connection chatter is not the stand-in's business
                }
            )
        httpd = _HttpServer((self.host, self.port), self)
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"standin-sources-{self.port}",
            daemon=True,
        )
        self._thread.start()
        log.info("Platform Sources stand-in listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (data, events and the port are kept)."""
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
            httpd.close_connections()
        if thread is not None:
            thread.join(timeout=5)
        if self._producer is not None:
            self._producer.flush(self.flush_timeout)
            self._producer = None  # a new one on the next start(); no client left retrying a gone broker

    def __enter__(self) -> StandInServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ test helpers

    def inject_faults(self, status: int = 503, count: int = 1, detail: str | None = None) -> None:
        """Answer the next ``count`` API requests with ``status`` and an error document."""
        with self._log_lock:
            self._faults.extend([(status, detail)] * count)

    def clear_faults(self) -> None:
        """Forget pending injected faults."""
        with self._log_lock:
            self._faults.clear()

    def status_patches(self, only_successful: bool = False) -> list[tuple[int, dict[str, Any]]]:
        """``(application_id, body)`` of every ``PATCH /applications/:id`` received."""
        result = []
        with self._log_lock:
            requests = list(self.requests)
        for req in requests:
            match = re.fullmatch(r"/api/sources/[^/]+/applications/(\d+)", req.path)
            if req.method != "PATCH" or match is None:
                continue
            if only_successful and not (req.status is not None and 200 <= req.status < 300):
                continue
            result.append((int(match.group(1)), req.body if isinstance(req.body, dict) else {}))
        return result

    def events_of(self, *event_types: str) -> list[RecordedEvent]:
        """Recorded events, optionally only those of the given types."""
        with self._log_lock:
            return [e for e in self.events if not event_types or e.event_type in event_types]

    def reset(self) -> None:
        """Drop all tenant data, recorded events, requests and pending faults."""
        with self.store.lock, self._log_lock:
            self.store.clear()
            self.events.clear()
            self.requests.clear()
            self._faults.clear()

    # ------------------------------------------------------------------ request handling

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        """Answer one request: ``(status, content type, body)``. Header names are lower-case."""
        split = urlsplit(target)
        path, pairs = split.path, parse_qsl(split.query, keep_blank_values=True)
        if path == "/health":
            return 200, "text/plain; charset=utf-8", b"OK"
        if path.startswith("/_standin/"):
            return self._control(method, path, body)
        match = _PREFIX.match(path)
        if match is None:
            return 404, "application/json", _dumps(_error_body(404, "Not Found"))
        parsed_body: Any = None
        if body:
            try:
                parsed_body = json.loads(body)
            except ValueError:
                parsed_body = body.decode("utf-8", "replace")
        record = RecordedRequest(method, path, pairs, dict(headers), parsed_body)
        with self._log_lock:
            self.requests.append(record)
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            status, detail = fault
            record.status = status
            phrase = detail or HTTPStatus(status).phrase
            return status, "application/json", _dumps(_error_body(status, phrase))
        scope = "internal" if match.group("prefix").startswith("/internal/") else "api"
        try:
            reply = self._dispatch(method, scope, path, match.group("rest") or "", pairs, headers, body, parsed_body)
        except ApiError as exc:
            request_id = headers.get("x-rh-insights-request-id") if exc.status >= 500 else None
            reply = _Reply(exc.status, _error_body(exc.status, exc.detail, request_id))
        except Exception:
            log.exception("stand-in failed on %s %s", method, path)
            reply = _Reply(500, _error_body(500, "Internal Server Error", headers.get("x-rh-insights-request-id")))
        record.status = reply.status
        if reply.payload is None:
            return reply.status, "application/json", b""
        return reply.status, "application/json", _dumps(reply.payload)

    def _dispatch(
        self,
        method: str,
        scope: str,
        path: str,
        rest: str,
        pairs: list[tuple[str, str]],
        headers: dict[str, str],
        raw_body: bytes,
        body: Any,
    ) -> _Reply:
        rest = rest.rstrip("/")
        candidates = [(r, m) for r in self._routes if r.scope == scope and (m := r.pattern.fullmatch(rest))]
        if not candidates:
            raise ApiError(404, "Not Found")
        chosen = next(((r, m) for r, m in candidates if r.method == method), None)
        if chosen is None:
            raise ApiError(405, "Method Not Allowed")
        route, found = chosen
        params = {name: to_id(value, "id") for name, value in found.groupdict().items()}
        ctx = self._context(headers)
        if self.check_psk_on_reads and ctx.psk is not None and ctx.psk not in self.psks:
            raise ApiError(401, "Unauthorized Action: Incorrect PSK")
        if route.access in ("write", "internal"):
            self._authorize_write(ctx, method, rest)
        tenant = None
        if route.access in ("tenant", "write"):
            if not ctx.org_id and not ctx.account:
                raise ApiError(401, "the ebs account number and the org id are missing")
            tenant = self.store.tenant(ctx.org_id, ctx.account)
        if method in ("POST", "PATCH") and raw_body and not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        call = _Call(ctx, tenant, params, path, pairs, body if isinstance(body, dict) else {}, headers)
        with self.store.lock:
            reply = route.handler(call)
            if reply.events:
                self._publish(reply.events, ctx)
        return reply

    def _context(self, headers: dict[str, str]) -> _Context:
        raw = headers.get("x-rh-identity") or None
        identity: dict[str, Any] = {}
        if raw:
            try:
                identity = json.loads(base64.b64decode(raw, validate=False))
                if not isinstance(identity, dict) or not isinstance(identity.get("identity", {}), dict):
                    raise ValueError("identity is not an object")
            except (ValueError, binascii.Error):
                raise ApiError(500, "Internal Server Error") from None
        ident = identity.get("identity") or {}
        header_org = headers.get("x-rh-sources-org-id", "")
        header_account = headers.get("x-rh-sources-account-number", "")
        ident_org = str(ident.get("org_id") or "")
        ident_account = str(ident.get("account_number") or "")
        return _Context(
            raw_identity=raw,
            identity=identity,
            org_id=ident_org or header_org,
            account=ident_account or header_account,
            forward_org_id=header_org or ident_org,
            forward_account=header_account or ident_account,
            psk=headers.get("x-rh-sources-psk"),
        )

    def _authorize_write(self, ctx: _Context, method: str, rest: str) -> None:
        if ctx.psk is not None:
            if ctx.psk not in self.psks:
                raise ApiError(401, "Unauthorized Action: Incorrect PSK")
            return
        if ctx.raw_identity:
            if ctx.cert_auth and (
                method not in ("GET", "POST", "DELETE")
                or (method == "DELETE" and not re.fullmatch(r"sources/[^/]+", rest))
            ):
                raise ApiError(405, "Method Not Allowed")
            return  # RBAC is bypassed in the stand-in
        raise ApiError(401, "Unauthorized Action: Missing RBAC permissions")

    # ------------------------------------------------------------------ events

    def _publish(self, events: Iterable[Event], ctx: _Context) -> None:
        produced = False
        for event_type, body in events:
            headers: dict[str, str] = {}
            if ctx.forward_account:
                headers["x-rh-sources-account-number"] = ctx.forward_account
            if ctx.forward_org_id:
                headers["x-rh-sources-org-id"] = ctx.forward_org_id
            headers["x-rh-identity"] = ctx.forward_identity
            headers["event_type"] = event_type
            headers["encoding"] = "json"
            event = RecordedEvent(event_type, headers, body)
            with self._log_lock:
                self.events.append(event)
            if self._producer is not None:
                self._produce(event)
                produced = True
        if produced:
            if self.publish_async:
                self._producer.poll(0)
            else:
                left = self._producer.flush(self.flush_timeout)
                if left:
                    log.warning("stand-in: %d event(s) not delivered to Kafka yet", left)

    def _produce(self, event: RecordedEvent) -> None:
        kwargs = {
            "key": event.key.encode(),
            "value": _dumps(event.body),
            "headers": [(k, v.encode()) for k, v in event.headers.items()],
            "on_delivery": _on_delivery,
        }
        try:
            self._producer.produce(self.topic, **kwargs)
        except BufferError:
            self._producer.flush(self.flush_timeout)
            self._producer.produce(self.topic, **kwargs)

    # ------------------------------------------------------------------ control routes

    def _control(self, method: str, path: str, body: bytes) -> tuple[int, str, bytes]:
        name = path[len("/_standin/") :].rstrip("/")
        if name == "faults" and method == "POST":
            spec = json.loads(body or b"{}")
            self.inject_faults(int(spec.get("status", 503)), int(spec.get("count", 1)), spec.get("detail"))
            return 204, "application/json", b""
        if name == "reset" and method == "POST":
            self.reset()
            return 204, "application/json", b""
        if name == "events" and method == "GET":
            shown = [
                {"event_type": e.event_type,
                 "headers": {k: v for k, v in e.headers.items() if k not in _SECRET_HEADERS},
                 "body": e.body}
                for e in self.events_of()
            ]
            return 200, "application/json", _dumps(shown)
        if name == "status_patches" and method == "GET":
            return 200, "application/json", _dumps([list(p) for p in self.status_patches()])
        return 404, "application/json", _dumps(_error_body(404, "Not Found"))

    # ------------------------------------------------------------------ routes

    def _build_routes(self) -> list[_Route]:
        table: list[tuple[str, str, str, Callable[[_Call], _Reply], str]] = [
            ("GET", "api", "source_types", self._list_source_types, "open"),
            ("GET", "api", "source_types/{id}", self._show_source_type, "open"),
            ("GET", "api", "source_types/{id}/sources", self._source_type_sources, "tenant"),
            ("GET", "api", "application_types", self._list_application_types, "open"),
            ("GET", "api", "application_types/{id}", self._show_application_type, "open"),
            ("GET", "api", "application_types/{id}/sources", self._application_type_sources, "tenant"),
            ("GET", "api", "sources", self._list_sources, "tenant"),
            ("POST", "api", "sources", self._create_source, "write"),
            ("GET", "api", "sources/{id}", self._show_source, "tenant"),
            ("PATCH", "api", "sources/{id}", self._update_source, "write"),
            ("DELETE", "api", "sources/{id}", self._delete_source, "write"),
            ("POST", "api", "sources/{id}/pause", self._pause_source, "write"),
            ("POST", "api", "sources/{id}/unpause", self._unpause_source, "write"),
            ("POST", "api", "sources/{id}/check_availability", self._check_availability, "tenant"),
            ("GET", "api", "sources/{id}/applications", self._source_applications, "tenant"),
            ("GET", "api", "sources/{id}/application_types", self._source_application_types, "tenant"),
            ("GET", "api", "sources/{id}/authentications", self._source_authentications, "tenant"),
            ("GET", "api", "sources/{id}/endpoints", self._source_endpoints, "tenant"),
            ("GET", "api", "applications", self._list_applications, "tenant"),
            ("POST", "api", "applications", self._create_application, "write"),
            ("GET", "api", "applications/{id}", self._show_application, "tenant"),
            ("PATCH", "api", "applications/{id}", self._update_application, "write"),
            ("DELETE", "api", "applications/{id}", self._delete_application, "write"),
            ("POST", "api", "applications/{id}/pause", self._pause_application, "write"),
            ("POST", "api", "applications/{id}/unpause", self._unpause_application, "write"),
            ("GET", "api", "applications/{id}/authentications", self._application_authentications_of, "tenant"),
            ("GET", "api", "authentications", self._list_authentications, "tenant"),
            ("POST", "api", "authentications", self._create_authentication, "write"),
            ("GET", "api", "authentications/{id}", self._show_authentication, "tenant"),
            ("PATCH", "api", "authentications/{id}", self._update_authentication, "write"),
            ("DELETE", "api", "authentications/{id}", self._delete_authentication, "write"),
            ("GET", "api", "application_authentications", self._list_app_auths, "tenant"),
            ("POST", "api", "application_authentications", self._create_app_auth, "write"),
            ("GET", "api", "application_authentications/{id}", self._show_app_auth, "tenant"),
            ("DELETE", "api", "application_authentications/{id}", self._delete_app_auth, "write"),
            ("GET", "api", "application_authentications/{id}/authentications", self._app_auth_authentications,
             "tenant"),
            ("GET", "api", "endpoints", self._list_endpoints, "tenant"),
            ("POST", "api", "endpoints", self._create_endpoint, "write"),
            ("GET", "api", "endpoints/{id}", self._show_endpoint, "tenant"),
            ("PATCH", "api", "endpoints/{id}", self._update_endpoint, "write"),
            ("DELETE", "api", "endpoints/{id}", self._delete_endpoint, "write"),
            ("GET", "api", "endpoints/{id}/authentications", self._endpoint_authentications, "tenant"),
            ("GET", "internal", "authentications/{id}", self._internal_authentication, "write"),
            ("GET", "internal", "sources", self._internal_sources, "internal"),
        ]
        return [
            _Route(method, scope, re.compile(pattern.replace("{id}", "(?P<id>[^/]+)")), handler, access)
            for method, scope, pattern, handler, access in table
        ]

    def _collection(
        self,
        call: _Call,
        table: str,
        rows: Iterable[Any],
        render: Callable[[Any], dict[str, Any]],
        *,
        fixed: bool = False,
    ) -> _Reply:
        query = ListQuery() if fixed else parse_list_query(call.query)
        related: dict[str, Callable[[Any], Any]] = {}
        if table == "sources":
            related["source_type"] = lambda s: self.store.source_types[s.source_type_id]
        elif table == "applications":
            related["application_type"] = lambda a: self.store.application_types[a.application_type_id]
        page, count = select(rows, table, query, related)
        pairs = [] if fixed else call.query
        return _Reply(
            200,
            {
                "data": [render(row) for row in page],
                "meta": {"count": count, "limit": query.limit, "offset": query.offset},
                "links": {
                    "first": _link(call.path, pairs, query.limit, query.offset),
                    "last": _link(call.path, pairs, query.limit, query.offset + query.limit),
                },
            },
        )

    def _tenant(self, call: _Call) -> Tenant:
        assert call.tenant is not None
        return call.tenant

    # source types and application types

    def _list_source_types(self, call: _Call) -> _Reply:
        return self._collection(call, "source_types", self.store.source_types.values(), render_source_type)

    def _show_source_type(self, call: _Call) -> _Reply:
        return _Reply(200, render_source_type(self.store.source_type(call.params["id"])))

    def _source_type_sources(self, call: _Call) -> _Reply:
        type_id = self.store.source_type(call.params["id"]).id
        rows = [s for s in self.store.owned(self.store.sources, self._tenant(call)) if s.source_type_id == type_id]
        return self._collection(call, "sources", rows, render_source)

    def _list_application_types(self, call: _Call) -> _Reply:
        return self._collection(
            call, "application_types", self.store.application_types.values(), render_application_type
        )

    def _show_application_type(self, call: _Call) -> _Reply:
        return _Reply(200, render_application_type(self.store.application_type(call.params["id"])))

    def _application_type_sources(self, call: _Call) -> _Reply:
        type_id = self.store.application_type(call.params["id"]).id
        with_app = {a.source_id for a in self.store.applications.values() if a.application_type_id == type_id}
        rows = [s for s in self.store.owned(self.store.sources, self._tenant(call)) if s.id in with_app]
        return self._collection(call, "sources", rows, render_source)

    # sources

    def _list_sources(self, call: _Call) -> _Reply:
        return self._collection(call, "sources", self.store.owned(self.store.sources, self._tenant(call)), render_source)

    def _show_source(self, call: _Call) -> _Reply:
        return _Reply(200, render_source(self.store.source(self._tenant(call), call.params["id"])))

    def _create_source(self, call: _Call) -> _Reply:
        source, events = self.store.create_source(self._tenant(call), call.body)
        return _Reply(201, render_source(source), events)

    def _update_source(self, call: _Call) -> _Reply:
        source, events = self.store.update_source(self._tenant(call), call.params["id"], call.body)
        return _Reply(200, render_source(source), events)

    def _delete_source(self, call: _Call) -> _Reply:
        return _Reply(204, None, self.store.delete_source(self._tenant(call), call.params["id"]))

    def _pause_source(self, call: _Call) -> _Reply:
        return _Reply(204, None, self.store.pause_source(self._tenant(call), call.params["id"], True))

    def _unpause_source(self, call: _Call) -> _Reply:
        return _Reply(204, None, self.store.pause_source(self._tenant(call), call.params["id"], False))

    def _check_availability(self, call: _Call) -> _Reply:
        self.store.source(self._tenant(call), call.params["id"])
        return _Reply(202, {})

    def _source_applications(self, call: _Call) -> _Reply:
        source = self.store.source(self._tenant(call), call.params["id"])
        rows = [a for a in self.store.applications.values() if a.source_id == source.id]
        return self._collection(call, "applications", rows, render_application)

    def _source_application_types(self, call: _Call) -> _Reply:
        source = self.store.source(self._tenant(call), call.params["id"])
        type_ids = {a.application_type_id for a in self.store.applications.values() if a.source_id == source.id}
        rows = [t for t in self.store.application_types.values() if t.id in type_ids]
        return self._collection(call, "application_types", rows, render_application_type)

    def _source_authentications(self, call: _Call) -> _Reply:
        source = self.store.source(self._tenant(call), call.params["id"])
        rows = [a for a in self.store.authentications.values() if a.source_id == source.id]
        return self._collection(call, "authentications", rows, render_authentication, fixed=True)

    def _source_endpoints(self, call: _Call) -> _Reply:
        source = self.store.source(self._tenant(call), call.params["id"])
        rows = [e for e in self.store.endpoints.values() if e.source_id == source.id]
        return self._collection(call, "endpoints", rows, render_endpoint)

    # applications

    def _list_applications(self, call: _Call) -> _Reply:
        rows = self.store.owned(self.store.applications, self._tenant(call))
        return self._collection(call, "applications", rows, render_application)

    def _show_application(self, call: _Call) -> _Reply:
        return _Reply(200, render_application(self.store.application(self._tenant(call), call.params["id"])))

    def _create_application(self, call: _Call) -> _Reply:
        app, events = self.store.create_application(self._tenant(call), call.body)
        return _Reply(201, render_application(app), events)

    def _update_application(self, call: _Call) -> _Reply:
        app, events = self.store.update_application(self._tenant(call), call.params["id"], call.body)
        return _Reply(200, render_application(app), events)

    def _delete_application(self, call: _Call) -> _Reply:
        return _Reply(204, None, self.store.delete_application(self._tenant(call), call.params["id"]))

    def _pause_application(self, call: _Call) -> _Reply:
        return _Reply(204, None, self.store.pause_application(self._tenant(call), call.params["id"], True))

    def _unpause_application(self, call: _Call) -> _Reply:
        return _Reply(204, None, self.store.pause_application(self._tenant(call), call.params["id"], False))

    def _application_authentications_of(self, call: _Call) -> _Reply:
        app = self.store.application(self._tenant(call), call.params["id"])
        rows = [
            a for a in self.store.authentications.values()
            if a.resource_type == "Application" and a.resource_id == app.id
        ]
        return self._collection(call, "authentications", rows, render_authentication, fixed=True)

    # authentications

    def _list_authentications(self, call: _Call) -> _Reply:
        rows = self.store.owned(self.store.authentications, self._tenant(call))
        return self._collection(call, "authentications", rows, render_authentication)

    def _show_authentication(self, call: _Call) -> _Reply:
        return _Reply(200, render_authentication(self.store.authentication(self._tenant(call), call.params["id"])))

    def _create_authentication(self, call: _Call) -> _Reply:
        auth, events = self.store.create_authentication(self._tenant(call), call.body)
        return _Reply(201, render_authentication(auth), events)

    def _update_authentication(self, call: _Call) -> _Reply:
        auth, events = self.store.update_authentication(self._tenant(call), call.params["id"], call.body)
        return _Reply(200, render_authentication(auth), events)

    def _delete_authentication(self, call: _Call) -> _Reply:
        return _Reply(204, None, self.store.delete_authentication(self._tenant(call), call.params["id"]))

    def _internal_authentication(self, call: _Call) -> _Reply:
        auth = self.store.authentication(self._tenant(call), call.params["id"])
        exposed = any(re.findall(r"\w+", k)[:1] == ["expose_encrypted_attribute"] and v == "password"
                      for k, v in call.query)
        return _Reply(200, render_authentication_internal(auth) if exposed else render_authentication(auth))

    # application authentications

    def _list_app_auths(self, call: _Call) -> _Reply:
        rows = self.store.owned(self.store.application_authentications, self._tenant(call))
        return self._collection(call, "application_authentications", rows, render_application_authentication)

    def _show_app_auth(self, call: _Call) -> _Reply:
        link = self.store.application_authentication(self._tenant(call), call.params["id"])
        return _Reply(200, render_application_authentication(link))

    def _create_app_auth(self, call: _Call) -> _Reply:
        link, events = self.store.create_application_authentication(self._tenant(call), call.body)
        return _Reply(201, render_application_authentication(link), events)

    def _delete_app_auth(self, call: _Call) -> _Reply:
        return _Reply(204, None, self.store.delete_application_authentication(self._tenant(call), call.params["id"]))

    def _app_auth_authentications(self, call: _Call) -> _Reply:
        link = self.store.application_authentication(self._tenant(call), call.params["id"])
        rows = [a for a in self.store.authentications.values() if a.id == link.authentication_id]
        return self._collection(call, "authentications", rows, render_authentication, fixed=True)

    # endpoints

    def _list_endpoints(self, call: _Call) -> _Reply:
        return self._collection(call, "endpoints", self.store.owned(self.store.endpoints, self._tenant(call)),
                                render_endpoint)

    def _show_endpoint(self, call: _Call) -> _Reply:
        return _Reply(200, render_endpoint(self.store.endpoint(self._tenant(call), call.params["id"])))

    def _create_endpoint(self, call: _Call) -> _Reply:
        endpoint, events = self.store.create_endpoint(self._tenant(call), call.body)
        return _Reply(201, render_endpoint(endpoint), events)

    def _update_endpoint(self, call: _Call) -> _Reply:
        endpoint, events = self.store.update_endpoint(self._tenant(call), call.params["id"], call.body)
        return _Reply(200, render_endpoint(endpoint), events)

    def _delete_endpoint(self, call: _Call) -> _Reply:
        return _Reply(204, None, self.store.delete_endpoint(self._tenant(call), call.params["id"]))

    def _endpoint_authentications(self, call: _Call) -> _Reply:
        endpoint = self.store.endpoint(self._tenant(call), call.params["id"])
        rows = [
            a for a in self.store.authentications.values()
            if a.resource_type == "Endpoint" and a.resource_id == endpoint.id
        ]
        return self._collection(call, "authentications", rows, render_authentication, fixed=True)

    # internal sources (all tenants, compact form)

    def _internal_sources(self, call: _Call) -> _Reply:
        rows = list(self.store.sources.values())
        if call.headers.get("x-rh-sources-skip-empty-sources", "").lower() == "true":
            cm = self.store.application_type_by_name(COST_MANAGEMENT)
            cm_id = cm.id if cm else -1
            keep = {a.source_id for a in self.store.applications.values() if a.application_type_id != cm_id}
            rows = [s for s in rows if s.id in keep]

        def render(s: Any) -> dict[str, Any]:
            tenant = self.store.tenant_by_id(s.tenant_id)
            return {"id": str(s.id), "availability_status": s.availability_status or "",
                    "tenant": tenant.external_tenant, "org_id": tenant.org_id}

        return self._collection(call, "sources", rows, render)


def _on_delivery(err: Any, msg: Any) -> None:
    if err is not None:
        log.warning("stand-in: event delivery failed: %s", err)


class _HttpHandler(BaseHTTPRequestHandler):
    """Adapts ``http.server`` to :meth:`StandInServer.handle`.

    HTTP/1.1 with keep-alive, as Platform Sources: a client may send many requests over one
    connection. Every response carries ``Content-Length``; an idle connection is closed after
    :data:`KEEP_ALIVE_SECONDS`.
    """

    server: _HttpServer
    server_version = "platform-sources-standin/1.0"
    protocol_version = "HTTP/1.1"
    timeout = KEEP_ALIVE_SECONDS  # idle keep-alive connections end (their thread with them)
    # Headers and body are separate writes: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK would hold every kept-alive answer ~40 ms.
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True  # its body is not read: the connection cannot carry more
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, content_type, payload = self.server.standin.handle(self.command, self.path, headers, body)
        self.send_response(status)
        if payload:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)


class _HttpServer(ThreadingHTTPServer):
    """One thread per connection, at most :data:`MAX_CONNECTIONS` at a time (further ones wait in
    the listen queue); :meth:`close_connections` ends the kept-alive ones."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], standin: StandInServer) -> None:
        self.standin = standin
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._open: set[Any] = set()
        self._open_lock = threading.Lock()
        self._stopping = False
        super().__init__(address, _HttpHandler)

    def shutdown(self) -> None:
        self._stopping = True  # a serve loop waiting for a free connection slot gives up
        super().shutdown()

    def process_request(self, request: Any, client_address: Any) -> None:
        while not self._slots.acquire(timeout=0.05):
            if self._stopping:
                self.shutdown_request(request)
                return
        with self._open_lock:
            self._open.add(request)
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._forget(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._forget(request)

    def _forget(self, request: Any) -> None:
        with self._open_lock:
            if request not in self._open:
                return
            self._open.discard(request)
        self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):  # a client went away, or stop() ended it
            log.debug("connection from %s ended: %r", client_address, exc)
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """End every open connection (a stopped stand-in answers nothing, kept-alive or not)."""
        with self._open_lock:
            open_now = list(self._open)
        for sock in open_now:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
