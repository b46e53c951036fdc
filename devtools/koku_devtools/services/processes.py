"""What the local servers share: loopback ports, log tails, and child-process lifecycle.

Every server is a context manager with explicit ``start()``/``stop()``. Child processes run in
their own session, are stopped with their ``stop_signal`` and then SIGKILL after a grace period,
and are always reaped; an ``atexit`` hook stops anything still running when the interpreter exits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

LOOPBACK = "127.0.0.1"
_ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


class ServiceError(RuntimeError):
    """A local server failed to start or to stop."""


# --------------------------------------------------------------------------- ports and logs


#: Ports of :func:`free_port` (and pairs of :func:`free_port_with_offset`) lie below Linux's ephemeral range
#: (32768-60999), so a server stopped for minutes (the fault tests) finds its port free again.
_SERVER_PORTS = (20_000, 32_000)


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on ``host`` that is free at the time of the call."""
    for _ in range(500):
        port = random.randint(*_SERVER_PORTS)
        if port_is_free(port, host):
            return port
    raise ServiceError(f"no free port on {host} in {_SERVER_PORTS}")


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether ``port`` can be bound on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port_with_offset(offset: int, taken: set[int], host: str = LOOPBACK) -> int:
    """Return a free port ``p`` such that ``p + offset`` is free too (neither in ``taken``)."""
    for _ in range(500):
        port = random.randint(10_000, _SERVER_PORTS[1] - offset)  # both below the ephemeral range
        if port in taken or port + offset in taken:
            continue
        if port_is_free(port, host) and port_is_free(port + offset, host):
            return port
    raise ServiceError(f"no free port pair (p, p+{offset}) on {host}")


def tcp_open(port: int, host: str = LOOPBACK, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(path: Path | None, lines: int = 40) -> str:
    """The last ``lines`` lines of a server log, colour codes removed."""
    if path is None or not path.exists():
        return "<no log>"
    text = _ANSI_COLOUR.sub("", path.read_text(errors="replace")).splitlines()
    return "\n".join(text[-lines:]) or "<empty log>"


# --------------------------------------------------------------------------- running servers

_RUNNING: list[Service] = []
_RUNNING_LOCK = threading.Lock()


def _stop_all() -> None:
    """Stop every server still running (registered with :mod:`atexit`)."""
    with _RUNNING_LOCK:
        running = list(reversed(_RUNNING))
    for service in running:
        with contextlib.suppress(Exception):  # best effort at interpreter exit
            service.stop()


atexit.register(_stop_all)


class Service:
    """Base: lifecycle, context-manager protocol and the registry of running servers."""

    name = "service"
    start_timeout = 30.0
    stop_signal = signal.SIGTERM
    log_path: Path | None = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is (believed to be) running."""
        raise NotImplementedError

    def start(self, timeout: float | None = None) -> Self:
        """Start the server and block until it is ready."""
        raise NotImplementedError

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and wait for it to exit."""
        raise NotImplementedError

    def restart(self, down_seconds: float = 0.0) -> Self:
        """Stop, stay down ``down_seconds``, and start again with the same data and address."""
        self.stop()
        time.sleep(down_seconds)
        return self.start()

    def _register(self) -> None:
        with _RUNNING_LOCK:
            if self not in _RUNNING:
                _RUNNING.append(self)

    def _unregister(self) -> None:
        with _RUNNING_LOCK:
            if self in _RUNNING:
                _RUNNING.remove(self)


class ProcessService(Service):
    """A server run as one child process in its own session, logging to a file in its work dir."""

    def __init__(self, workdir: Path | None) -> None:
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix=f"koku-{self.name}-"))
        self.workdir = Path(workdir).resolve()
        self.log_path = self.workdir / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.started_in: float | None = None  # seconds from spawn to ready

    # -- to override
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> Mapping[str, str]:
        return {}

    def _ready(self) -> bool:
        raise NotImplementedError

    def _before_start(self) -> None:
        """Hook run before spawning (e.g. to pick ports)."""

    def _after_stop(self) -> None:
        """Hook run after the process exited."""

    # -- lifecycle
    @property
    def pid(self) -> int | None:
        """Process id of the running server, if any."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float | None = None) -> Self:
        if self.running:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._before_start()
        env = {**os.environ, **self._env()}
        t0 = time.monotonic()
        assert self.log_path is not None
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%F %T')} {' '.join(self._command())}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
                start_new_session=True,
            )
        self._register()
        self._wait_ready(t0, self.start_timeout if timeout is None else timeout)
        self.started_in = time.monotonic() - t0
        return self

    def _wait_ready(self, t0: float, timeout: float) -> None:
        assert self._proc is not None
        last_error: BaseException | None = None
        while True:
            code = self._proc.poll()
            if code is not None:
                self.stop()
                raise ServiceError(
                    f"{self.name} exited with code {code} during start-up "
                    f"(log {self.log_path}):\n{log_tail(self.log_path)}"
                )
            try:
                if self._ready():
                    return
            except Exception as exc:  # not ready yet
                last_error = exc
            if time.monotonic() - t0 > timeout:
                self.stop()
                raise ServiceError(
                    f"{self.name} not ready after {timeout:.0f} s (last probe error: "
                    f"{last_error!r}; log {self.log_path}):\n{log_tail(self.log_path)}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate(proc, self.stop_signal, timeout)
            self._after_stop()
        self._unregister()


def _terminate(proc: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> None:
    """Signal the process group, wait up to ``timeout``, then SIGKILL; always reap."""
    if proc.poll() is None:
        _signal_group(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(5)
    # Stray children left in the group (if any) get SIGKILL too.
    _signal_group(proc.pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
