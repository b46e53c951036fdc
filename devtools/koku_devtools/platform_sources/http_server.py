"""The stand-in's HTTP transport (``http.server``): HTTP/1.1 keep-alive, one thread per connection,
at most :data:`MAX_CONNECTIONS` connections at a time, and a listen backlog for the ones waiting."""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

#: An idle kept-alive connection is closed after this many seconds (the default).
KEEP_ALIVE_SECONDS = 10.0
#: Connections served at once (one thread each); further ones wait in the listen queue.
MAX_CONNECTIONS = 128
#: Connections the kernel queues before they are accepted (``socketserver``'s default).
LISTEN_BACKLOG = socketserver.TCPServer.request_queue_size

#: ``(method, target, lower-case headers, body) -> (status, content type, body)``.
RequestAnswerer = Callable[[str, str, dict[str, str], bytes], tuple[int, str, bytes]]


class _ConnectionHandler(BaseHTTPRequestHandler):
    """Serves the requests of one connection with the server's :attr:`StandInHttpServer.answer`.

    HTTP/1.1 with keep-alive, as Platform Sources: a client may send many requests over one
    connection. Every response carries ``Content-Length``; an idle connection is closed after the
    server's ``keep_alive_seconds``.
    """

    server: StandInHttpServer
    server_version = "platform-sources-standin/1.0"
    protocol_version = "HTTP/1.1"
    # Headers and body are separate writes: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK would hold every kept-alive answer ~40 ms.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        # An idle kept-alive connection times out and ends (its thread with it).
        self.connection.settimeout(self.server.keep_alive_seconds)

    def _serve(self) -> None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True  # its body is not read: the connection cannot carry more
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, content_type, payload = self.server.answer(self.command, self.path, headers, body)
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

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class StandInHttpServer(ThreadingHTTPServer):
    """One thread per connection, at most :data:`MAX_CONNECTIONS` at a time (further ones wait in
    the listen queue of ``listen_backlog``); :meth:`close_connections` ends the kept-alive ones."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        answer: RequestAnswerer,
        *,
        keep_alive_seconds: float = KEEP_ALIVE_SECONDS,
        listen_backlog: int = LISTEN_BACKLOG,
    ) -> None:
        self.answer = answer
        self.keep_alive_seconds = keep_alive_seconds
        self.request_queue_size = listen_backlog  # read by server_activate() in super().__init__
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._open: set[Any] = set()
        self._open_lock = threading.Lock()
        self._stopping = False
        super().__init__(address, _ConnectionHandler)

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
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
