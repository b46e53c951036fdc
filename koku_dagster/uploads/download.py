"""Download an announced payload under the outbound URL policy (``KOKU_UPLOAD_URL_ALLOWLIST``).

Who writes the URL: whoever can produce on the upload topic. So the URL may name our own
services, a cloud metadata endpoint or another tenant's folder, and the answer must not tell the
sender which of them exist. The policy:

- ``file://`` only for a file whose resolved path (symlinks followed) lies under one of the local
  bucket roots and in no folder that a ``-local`` source of another org reads;
- ``http(s)`` only when EVERY address the host resolves to is public (not loopback, private,
  link-local, shared 100.64/10, multicast, reserved or unspecified, IPv4 or IPv6, embedded IPv4
  included), unless the URL starts with an allow-listed ``scheme://host[:port][/path]`` prefix;
- the host is resolved once and the connection goes to that vetted address (the Host header and
  TLS server name stay the URL's host), so a DNS answer cannot change between check and connect;
- redirects are followed by hand, each target passing the same rule, at most :data:`MAX_REDIRECTS`.

Every refusal and every failure to fetch (refused, unreachable, closed port, error status) raises
:class:`~koku_dagster.reports.errors.PayloadDownloadError` with the same fixed text
(:data:`FETCH_FAILED`); the details go to the log only. A refused URL makes no connection.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urljoin, urlsplit

import certifi
import urllib3

from koku_dagster.reports.errors import PayloadDownloadError, PayloadTooLargeError
from koku_dagster.uploads.announcements import shown_url

log = logging.getLogger(__name__)

#: What a sender learns about any URL that could not be fetched.
FETCH_FAILED = "the payload could not be fetched from the announced URL (refused, unreachable or answered an error)"
MAX_REDIRECTS = 3
MAX_DOWNLOAD_SECONDS = 600.0
CHUNK_BYTES = 1 << 20
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class _Refused(Exception):
    """Internal: why a URL is not fetched (logged, never shown)."""


@dataclass(frozen=True)
class UrlPolicy:
    """Where payloads may come from: ``file://`` under ``file_roots`` but not under ``refused_dirs``
    (other tenants' folders); ``http(s)`` from public addresses, or from any address under an
    allow-listed prefix."""

    allowlist: tuple[str, ...] = ()
    file_roots: tuple[Path, ...] = ()
    refused_dirs: tuple[Path, ...] = ()

    def allow_listed(self, url: str) -> bool:
        """Whether ``url`` starts with an allow-listed prefix (same scheme, host and port; path
        prefix on a ``/`` boundary)."""
        target = _origin_and_path(url)
        if target is None:
            return False
        for prefix in self.allowlist:
            allowed = _origin_and_path(prefix)
            if allowed is None or allowed[0] != target[0]:
                continue
            base = allowed[1].rstrip("/")
            if not base or target[1] == base or target[1].startswith(base + "/"):
                return True
        return False


def _origin_and_path(url: str) -> tuple[tuple[str, str, int], str] | None:
    """((scheme, host, port), path) of an http(s) URL, normalised; None when it is not one."""
    try:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower().rstrip(".")
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    if scheme not in _DEFAULT_PORTS or not host or port is None:
        return None
    return (scheme, host, port), parts.path or "/"


def is_public(address: IPAddress) -> bool:
    """Whether an address is globally reachable, also judging the IPv4 address an IPv6 one carries
    (mapped ``::ffff:a.b.c.d``, 6to4, Teredo, NAT64 ``64:ff9b::/96``)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
        if address in ipaddress.IPv6Network("64:ff9b::/96"):
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if any(e is not None and not is_public(e) for e in embedded):
            return False
    unsafe = (
        address.is_private,
        address.is_loopback,
        address.is_link_local,
        address.is_multicast,
        address.is_reserved,
        address.is_unspecified,
    )
    return address.is_global and not any(unsafe)


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise _Refused(f"cannot resolve {host!r} ({type(exc).__name__})") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
    if not addresses:
        raise _Refused(f"{host!r} has no address")
    return addresses


@dataclass(frozen=True)
class _Target:
    url: str
    scheme: str
    host: str
    port: int
    address: IPAddress

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == _DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def request_path(self) -> str:
        parts = urlsplit(self.url)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def vet_http(url: str, policy: UrlPolicy) -> _Target:
    """The vetted address to connect to for an http(s) URL; :class:`_Refused` when the policy refuses it."""
    found = _origin_and_path(url)
    if found is None:
        raise _Refused("not an http(s) URL with a host")
    (scheme, host, port), _ = found
    addresses = _resolve(host, port)
    if not policy.allow_listed(url):
        private = [a for a in addresses if not is_public(a)]
        if private:
            raise _Refused(f"{host!r} resolves to a non-public address ({private[0]})")
    return _Target(url, scheme, host, port, addresses[0])


def _ca_bundle() -> str:
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE") or certifi.where()


def _pool(target: _Target, timeout: float) -> urllib3.HTTPConnectionPool:
    """A one-connection pool to the vetted address (never to a name resolved again)."""
    common = {
        "timeout": urllib3.Timeout(connect=timeout, read=timeout),
        "retries": False,
        "maxsize": 1,
    }
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            str(target.address),
            target.port,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=_ca_bundle(),
            **common,  # type: ignore[arg-type]
        )
    return urllib3.HTTPConnectionPool(str(target.address), target.port, **common)  # type: ignore[arg-type]


def _open_http(url: str, policy: UrlPolicy, timeout: float) -> tuple[urllib3.HTTPConnectionPool, Any]:
    """The pool and 200 response for ``url``, redirects followed by hand under the policy."""
    for _ in range(MAX_REDIRECTS + 1):
        target = vet_http(url, policy)
        pool = _pool(target, timeout)
        try:
            response = pool.urlopen(
                "GET",
                target.request_path,
                headers={"Host": target.host_header, "Accept-Encoding": "identity"},
                redirect=False,
                preload_content=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            pool.close()
            raise _Refused(f"{shown_url(url)}: connection failed ({type(exc).__name__})") from None
        if response.status == 200:
            return pool, response
        response.release_conn()
        pool.close()
        if response.status not in _REDIRECTS or not response.headers.get("Location"):
            raise _Refused(f"{shown_url(url)}: HTTP status {response.status}")
        url = urljoin(url, response.headers["Location"])
    raise _Refused(f"more than {MAX_REDIRECTS} redirects")


def _copy(chunks: Iterator[bytes], out: IO[bytes], max_bytes: int) -> None:
    received = 0
    for chunk in chunks:
        received += len(chunk)
        if received > max_bytes:
            raise PayloadTooLargeError(f"the payload exceeds {max_bytes} bytes")
        out.write(chunk)


def _fetch_http(url: str, dest: Path, policy: UrlPolicy, max_bytes: int, timeout: float, max_seconds: float) -> None:
    pool, response = _open_http(url, policy, timeout)
    with pool:
        _download(response, dest, max_bytes, max_seconds)


def _download(response: Any, dest: Path, max_bytes: int, max_seconds: float) -> None:
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > max_bytes:
        response.release_conn()
        raise PayloadTooLargeError(f"the payload exceeds {max_bytes} bytes")
    expired = threading.Event()

    def expire() -> None:  # a read blocks until data comes: closing the response ends it
        expired.set()
        response.close()

    watchdog = threading.Timer(max_seconds, expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        with dest.open("wb") as out:
            _copy(response.stream(CHUNK_BYTES), out, max_bytes)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        if expired.is_set():
            raise _Refused(f"download took longer than {max_seconds:g} s") from None
        raise _Refused(f"download failed ({type(exc).__name__})") from None
    finally:
        watchdog.cancel()
        response.release_conn()
    if expired.is_set():
        raise _Refused(f"download took longer than {max_seconds:g} s")


def _fetch_file(url: str, dest: Path, policy: UrlPolicy, max_bytes: int) -> None:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise _Refused("file URLs must be local")
    source = Path(unquote(parts.path)).resolve()  # symlinks followed: the real file must be inside
    if not any(source != root and source.is_relative_to(root) for root in (r.resolve() for r in policy.file_roots)):
        raise _Refused("file outside the local bucket roots")
    if any(source.is_relative_to(folder.resolve()) for folder in policy.refused_dirs):
        raise _Refused("file in a folder another org's source reads")
    if not source.is_file():
        raise _Refused("no such file")
    if source.stat().st_size > max_bytes:
        raise PayloadTooLargeError(f"the payload exceeds {max_bytes} bytes")
    with source.open("rb") as src, dest.open("wb") as out:
        _copy(iter(lambda: src.read(CHUNK_BYTES), b""), out, max_bytes)


def fetch_payload(
    url: str,
    dest: Path,
    *,
    policy: UrlPolicy,
    max_bytes: int,
    timeout: float,
    max_seconds: float = MAX_DOWNLOAD_SECONDS,
) -> Path:
    """Download ``url`` to ``dest`` under the policy of the module docstring.

    ``timeout`` bounds connecting and each read, ``max_seconds`` the whole download; more than
    ``max_bytes`` raises :class:`PayloadTooLargeError`. Nothing is left at ``dest`` on error.
    """
    scheme = urlsplit(url).scheme.lower()
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        if scheme in _DEFAULT_PORTS:
            _fetch_http(url, dest, policy, max_bytes, timeout, max_seconds)
        elif scheme == "file":
            _fetch_file(url, dest, policy, max_bytes)
        else:
            raise _Refused(f"scheme {scheme[:20]!r} is not http, https or file")
    except _Refused as why:
        dest.unlink(missing_ok=True)
        log.warning("payload URL %s not fetched: %s", shown_url(url), why)
        raise PayloadDownloadError(FETCH_FAILED) from None
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return dest
