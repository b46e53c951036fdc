"""The Platform Sources stand-in: lifecycle, request dispatch, and what tests and benchmarks control.

Serves the public API under ``/api/sources/{v1.0,v2.0,v3.0,v3.1,v1,v2,v3}``, the internal API under
``/internal/{v1.0,v2.0}`` and ``/health``. Writes publish the service's events to Kafka (when a
bootstrap server is given) and always record them in :attr:`StandInServer.events`.
A few ``/_standin/*`` control routes exist for out-of-process use (faults, events, latency, reset).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from koku_devtools.platform_sources.errors import ApiError, bad_request
from koku_devtools.platform_sources.events import DEFAULT_TOPIC, SECRET_HEADERS, EventPublisher, RecordedEvent
from koku_devtools.platform_sources.handlers import Call, Reply
from koku_devtools.platform_sources.http_server import KEEP_ALIVE_SECONDS, LISTEN_BACKLOG, StandInHttpServer
from koku_devtools.platform_sources.routes import API_PREFIX, find_route
from koku_devtools.platform_sources.store import Store
from koku_devtools.platform_sources.tenants import authorize_write, check_psk, request_identity, tenant_for

log = logging.getLogger(__name__)

JSON = "application/json"
Answer = tuple[int, str, bytes]
#: Replaces an answer: (status, payload as the service would send it) -> (status, body bytes).
Rewrite = Callable[[int, Any], tuple[int, bytes]]


@dataclass
class RecordedRequest:
    """One API request received (headers are kept in full but left out of ``repr``)."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str] = field(repr=False)
    body: Any = None
    status: int | None = None


def _error_body(status: int, detail: str, request_id: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"detail": detail, "status": str(status)}
    if request_id:
        error["request_id"] = request_id
    return {"errors": [error]}


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _parse_body(body: bytes) -> Any:
    """The JSON of a request body; its text when it is not JSON; None when empty."""
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


class StandInServer:
    """A faithful-enough Platform Sources service for tests, benchmarks and ``make demo``.

    ``start()`` binds and serves in a background thread; ``stop()`` closes the socket; a later
    ``start()`` binds the same port again with the same data.

    Options beyond the service's own behaviour: ``publish_async`` (see
    :class:`~koku_devtools.platform_sources.events.EventPublisher`), ``honor_uid`` (see
    :class:`~koku_devtools.platform_sources.store.Store`), ``check_psk_on_reads`` (a wrong PSK is
    refused on reads too), ``latency_ms`` (every API answer is delayed by this much, with a sleep that
    lets other requests be served, to model a remote service; changeable at run time),
    ``request_log_limit`` (keep only the latest requests in :attr:`requests`), and the transport's
    ``keep_alive_seconds`` and ``listen_backlog``.
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
        latency_ms: float = 0.0,
        request_log_limit: int | None = None,
        keep_alive_seconds: float = KEEP_ALIVE_SECONDS,
        listen_backlog: int = LISTEN_BACKLOG,
    ) -> None:
        self.host = host
        self.port = port
        self.psks = frozenset(p.strip() for p in psk.split(",") if p.strip())
        self.check_psk_on_reads = check_psk_on_reads
        self.latency_ms = max(0.0, latency_ms)
        self.request_log_limit = request_log_limit
        self.keep_alive_seconds = keep_alive_seconds
        self.listen_backlog = listen_backlog
        self.store = Store(honor_uid=honor_uid)
        self.requests: list[RecordedRequest] = []
        self._log_lock = threading.Lock()
        self._publisher = EventPublisher(
            kafka_bootstrap, topic, self._log_lock, publish_async=publish_async, flush_timeout=flush_timeout
        )
        self._faults: list[tuple[int, str | None, re.Pattern[str] | None, str | None]] = []
        self._rewrites: list[tuple[str, re.Pattern[str], Rewrite]] = []
        self._httpd: StandInHttpServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """``http://host:port`` (the port is known once started)."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._httpd is not None

    @property
    def events(self) -> list[RecordedEvent]:
        """Every event published, in order (tests may clear it)."""
        return self._publisher.recorded

    def start(self) -> StandInServer:
        """Listen and serve in a daemon thread; returns once the socket is bound."""
        if self._httpd is not None:
            return self
        self._publisher.connect()
        httpd = StandInHttpServer(
            (self.host, self.port),
            self.handle,
            keep_alive_seconds=self.keep_alive_seconds,
            listen_backlog=self.listen_backlog,
        )
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"standin-sources-{self.port}",
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
        self._publisher.close()

    def __enter__(self) -> StandInServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ test helpers

    def inject_faults(
        self,
        status: int = 503,
        count: int = 1,
        detail: str | None = None,
        path: str | None = None,
        org_id: str | None = None,
    ) -> None:
        """Answer the next ``count`` API requests with ``status`` and an error document (only requests
        whose path matches the regular expression ``path``, and made for tenant ``org_id``, when given)."""
        pattern = re.compile(path) if path is not None else None
        with self._log_lock:
            self._faults.extend([(status, detail, pattern, org_id)] * count)

    def clear_faults(self) -> None:
        """Forget pending injected faults and answer rewrites."""
        with self._log_lock:
            self._faults.clear()
            self._rewrites.clear()

    def rewrite_answers(self, method: str, path: str, rewrite: Rewrite) -> None:
        """Misbehave: answers to ``method`` requests whose path matches the regular expression ``path``
        are replaced by ``rewrite(status, payload)`` -> ``(status, body bytes)`` (until :meth:`clear_faults`)."""
        with self._log_lock:
            self._rewrites.append((method, re.compile(path), rewrite))

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

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        """Answer one request: ``(status, content type, body)``. Header names are lower-case."""
        split = urlsplit(target)
        path, pairs = split.path, parse_qsl(split.query, keep_blank_values=True)
        if path == "/health":
            return 200, "text/plain; charset=utf-8", b"OK"
        if path.startswith("/_standin/"):
            return self._control(method, path, body)
        if self.latency_ms and path.startswith(("/api/", "/internal/")):
            time.sleep(self.latency_ms / 1000.0)
        match = API_PREFIX.match(path)
        if match is None:
            return 404, JSON, _dumps(_error_body(404, "Not Found"))
        parsed_body = _parse_body(body)
        record = RecordedRequest(method, path, pairs, dict(headers), parsed_body)
        fault = self._record(record)
        if fault is not None:
            status, detail = fault
            record.status = status
            return status, JSON, _dumps(_error_body(status, detail or HTTPStatus(status).phrase))
        scope = "internal" if match.group("prefix").startswith("/internal/") else "api"
        rest = (match.group("rest") or "").rstrip("/")
        try:
            reply = self._dispatch(method, scope, path, rest, pairs, headers, body, parsed_body)
        except ApiError as exc:
            request_id = headers.get("x-rh-insights-request-id") if exc.status >= 500 else None
            reply = Reply(exc.status, _error_body(exc.status, exc.detail, request_id))
        except Exception:
            log.exception("stand-in failed on %s %s", method, path)
            reply = Reply(500, _error_body(500, "Internal Server Error", headers.get("x-rh-insights-request-id")))
        record.status = reply.status
        rewritten = self._rewritten(method, path, reply.status, reply.payload)
        if rewritten is not None:
            record.status = rewritten[0]
            return rewritten[0], JSON, rewritten[1]
        return reply.status, JSON, b"" if reply.payload is None else _dumps(reply.payload)

    def _record(self, request: RecordedRequest) -> tuple[int, str | None] | None:
        """Log the request and take the next injected fault for its path, if any (one step, so faults go in order)."""
        with self._log_lock:
            self.requests.append(request)
            if self.request_log_limit is not None and len(self.requests) > self.request_log_limit:
                del self.requests[: len(self.requests) - self.request_log_limit]
            org = request.headers.get("x-rh-sources-org-id")
            for index, (status, detail, pattern, org_id) in enumerate(self._faults):
                if (pattern is None or pattern.search(request.path)) and org_id in (None, org):
                    del self._faults[index]
                    return status, detail
            return None

    def _rewritten(self, method: str, path: str, status: int, payload: Any) -> tuple[int, bytes] | None:
        with self._log_lock:
            rewrites = [fn for m, pattern, fn in self._rewrites if m == method and pattern.search(path)]
        return rewrites[-1](status, payload) if rewrites else None

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
    ) -> Reply:
        route, params = find_route(method, scope, rest)
        caller = request_identity(headers)
        if self.check_psk_on_reads:
            check_psk(caller, self.psks)
        if route.access in ("write", "internal"):
            authorize_write(caller, self.psks, method, rest)
        tenant = None
        if route.access in ("tenant", "write"):
            caller.require_tenancy()
            tenant = tenant_for(self.store, caller.org_id, caller.account)
        if method in ("POST", "PATCH") and raw_body and not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        call = Call(caller, tenant, params, path, pairs, body if isinstance(body, dict) else {}, headers)
        with self.store.lock:
            reply = route.handler(self.store, call)
            if reply.events:
                self._publisher.publish(reply.events, caller)
        return reply

    # ------------------------------------------------------------------ control routes

    def _control(self, method: str, path: str, body: bytes) -> Answer:
        name = path[len("/_standin/") :].rstrip("/")
        if name == "faults" and method == "POST":
            spec = json.loads(body or b"{}")
            self.inject_faults(int(spec.get("status", 503)), int(spec.get("count", 1)), spec.get("detail"))
            return 204, JSON, b""
        if name == "latency" and method == "POST":
            self.latency_ms = max(0.0, float(json.loads(body or b"{}").get("ms", 0)))
            return 204, JSON, b""
        if name == "reset" and method == "POST":
            self.reset()
            return 204, JSON, b""
        if name == "events" and method == "GET":
            shown = [
                {
                    "event_type": e.event_type,
                    "headers": {k: v for k, v in e.headers.items() if k not in SECRET_HEADERS},
                    "body": e.body,
                }
                for e in self.events_of()
            ]
            return 200, JSON, _dumps(shown)
        if name == "status_patches" and method == "GET":
            return 200, JSON, _dumps([list(p) for p in self.status_patches()])
        return 404, JSON, _dumps(_error_body(404, "Not Found"))
